"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax (Keras 3 arguments)."""
from __future__ import annotations

from .. import activations as _activations
from .. import initializers as _initializers
from .. import ops
from .arguments import is_int, unsupported
from .base import Layer


def _number(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Invalid value for argument `{name}`: expected a number, got {value!r}")
    return float(value)


class ReLU(Layer):
    """``max_value`` for x >= max_value, x for threshold < x < max_value,
    ``negative_slope * (x - threshold)`` otherwise."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and _number(max_value, "max_value") < 0.0:
            raise ValueError(f"max_value of a ReLU layer cannot be a negative value. Received: "
                             f"max_value={max_value}")
        if negative_slope is None or _number(negative_slope, "negative_slope") < 0.0:
            raise ValueError(f"negative_slope of a ReLU layer cannot be a negative value. "
                             f"Received: negative_slope={negative_slope}")
        if threshold is None:
            raise ValueError(f"threshold of a ReLU layer cannot be None. Received: "
                             f"threshold={threshold}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = _number(threshold, "threshold")

    def call(self, inputs):
        return _activations.relu(inputs, negative_slope=self.negative_slope,
                                 max_value=self.max_value, threshold=self.threshold)


class LeakyReLU(Layer):
    """x for x > 0, ``negative_slope * x`` otherwise (default slope 0.3, as Keras)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:   # Keras 2's name, still accepted by Keras 3
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or _number(negative_slope, "negative_slope") < 0:
            raise ValueError(f"The negative_slope value of a Leaky ReLU layer cannot be None or "
                             f"negative value. Expected a float. Received: "
                             f"negative_slope={negative_slope}")
        self.negative_slope = float(negative_slope)

    def call(self, inputs):
        return ops.leaky_relu(inputs, negative_slope=self.negative_slope)


class PReLU(Layer):
    """Leaky ReLU with a learned slope ``alpha`` (shape: the input's non-batch shape,
    with 1 on ``shared_axes``)."""

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        unsupported("PReLU", alpha_regularizer=alpha_regularizer,
                    alpha_constraint=alpha_constraint)
        self.alpha_initializer = _initializers.get(alpha_initializer)
        if shared_axes is None:
            self.shared_axes = None
        elif is_int(shared_axes):
            self.shared_axes = [int(shared_axes)]
        else:
            self.shared_axes = [int(a) for a in shared_axes]
        self.alpha = None

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or []:
            shape[a - 1] = 1
        if any(d is None for d in shape):
            raise ValueError(f'PReLU layer "{self.name}": the non-batch input shape must be '
                             f"defined (or shared), got {tuple(input_shape)}")
        self.alpha = self.add_weight(tuple(shape), self.alpha_initializer, name="alpha")

    def call(self, inputs):
        pos = ops.relu(inputs)
        neg = ops.multiply(ops.negative(self.alpha), ops.relu(ops.negative(inputs)))
        return ops.add(pos, neg)


class ELU(Layer):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _number(alpha, "alpha")

    def call(self, inputs):
        return ops.elu(inputs, alpha=self.alpha)


class Softmax(Layer):
    """Softmax over ``axis`` (an int, or a tuple of axes normalized together); a
    ``mask`` (True = keep) pushes masked logits to -1e9 and zeroes their outputs."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not is_int(axis) and not (isinstance(axis, (list, tuple)) and axis
                                     and all(is_int(a) for a in axis)):
            raise ValueError(f"Softmax: `axis` must be an int or a tuple of ints, got {axis!r}")
        self.axis = int(axis) if is_int(axis) else tuple(int(a) for a in axis)

    def call(self, inputs, mask=None):
        if mask is not None:
            keep = ops.cast(mask, inputs.dtype)
            inputs = ops.add(inputs, ops.multiply(ops.subtract(1.0, keep), -1e9))
        if isinstance(self.axis, tuple) and len(self.axis) > 1:
            out = ops.exp(ops.subtract(inputs, ops.logsumexp(inputs, axis=self.axis,
                                                             keepdims=True)))
        else:
            axis = self.axis[0] if isinstance(self.axis, tuple) else self.axis
            out = ops.softmax(inputs, axis=axis)
        if mask is not None:
            out = ops.multiply(out, ops.cast(mask, out.dtype))
        return out
