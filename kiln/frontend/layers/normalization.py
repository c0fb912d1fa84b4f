"""BatchNormalization and LayerNormalization, as Keras 3 computes them.

BatchNormalization at inference is ``x * scale + shift`` with ``scale = gamma /
sqrt(moving_variance + epsilon)`` and ``shift = beta - moving_mean * scale`` built from
the parameters with ops, so ``simplify`` + ``constfold`` fold it into a preceding
Dense / Conv. With ``training=True`` (and the layer trainable) it normalizes with the
batch mean and biased variance over every axis but ``axis``, and updates the moving
statistics with ``kiln.ops.assign``: ``moving = moving * momentum + batch * (1 - momentum)``.
"""
from __future__ import annotations

from .. import initializers as _initializers
from .. import ops
from .arguments import is_int, unsupported
from .base import Layer
from .input_spec import InputSpec


def _check_float(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Invalid value for argument `{name}`: expected a float, got {value!r}")
    return float(value)


class BatchNormalization(Layer):
    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, renorm=False, renorm_clipping=None,
                 renorm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        unsupported("BatchNormalization", beta_regularizer=beta_regularizer,
                    gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                    gamma_constraint=gamma_constraint, renorm=renorm,
                    renorm_clipping=renorm_clipping)
        if not is_int(axis):
            raise ValueError(f"BatchNormalization: `axis` must be an integer, got axis={axis!r}")
        self.axis = int(axis)
        self.momentum = _check_float(momentum, "momentum")
        self.epsilon = _check_float(epsilon, "epsilon")
        self.center, self.scale = bool(center), bool(scale)
        self.synchronized = bool(synchronized)   # one device: the same statistics
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.moving_mean_initializer = _initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = _initializers.get(moving_variance_initializer)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(f'BatchNormalization layer "{self.name}": axis {self.axis} is out '
                             f"of range for input shape {tuple(input_shape)}")
        self.axis = self.axis % rank
        c = input_shape[self.axis]
        if c is None:
            raise ValueError(f'BatchNormalization layer "{self.name}": axis {self.axis} of the '
                             f"input shape {tuple(input_shape)} must be defined")
        shape = (c,)
        if self.scale:
            self.gamma = self.add_weight(shape, self.gamma_initializer, name="gamma")
        if self.center:
            self.beta = self.add_weight(shape, self.beta_initializer, name="beta")
        self.moving_mean = self.add_weight(shape, self.moving_mean_initializer,
                                           name="moving_mean", trainable=False)
        self.moving_variance = self.add_weight(shape, self.moving_variance_initializer,
                                               name="moving_variance", trainable=False)
        self.input_spec = InputSpec(ndim=rank, axes={self.axis: c})

    def call(self, inputs, training=False):
        rank = inputs.type.rank
        c = inputs.shape[self.axis]
        last = self.axis == rank - 1
        bshape = tuple(c if i == self.axis else 1 for i in range(rank))

        def bcast(v):   # a per-channel vector, broadcastable against the inputs
            return v if last else ops.reshape(v, bshape)

        if training and self.trainable:
            axes = tuple(i for i in range(rank) if i != self.axis)
            mean, var = ops.moments(inputs, axes=axes, keepdims=True)
            m = self.momentum
            ops.assign(self.moving_mean, ops.add(ops.multiply(self.moving_mean, m),
                                                 ops.multiply(ops.reshape(mean, (c,)), 1.0 - m)))
            ops.assign(self.moving_variance,
                       ops.add(ops.multiply(self.moving_variance, m),
                               ops.multiply(ops.reshape(var, (c,)), 1.0 - m)))
        else:
            mean = bcast(ops.convert(self.moving_mean))
            var = bcast(ops.convert(self.moving_variance))
        scale = ops.rsqrt(ops.add(var, self.epsilon))
        if self.gamma is not None:
            scale = ops.multiply(scale, bcast(ops.convert(self.gamma)))
        shift = ops.negative(ops.multiply(mean, scale))
        if self.beta is not None:
            shift = ops.add(bcast(ops.convert(self.beta)), shift)
        return ops.add(ops.multiply(inputs, scale), shift)


class LayerNormalization(Layer):
    """Normalize each sample over ``axis`` (default the last): ``(x - mean) /
    sqrt(var + epsilon) * gamma + beta`` (biased variance, epsilon 1e-3)."""

    def __init__(self, axis=-1, epsilon=0.001, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        unsupported("LayerNormalization", rms_scaling=rms_scaling,
                    beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                    beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        if is_int(axis):
            self.axis = int(axis)
        elif isinstance(axis, (list, tuple)) and axis and all(is_int(a) for a in axis):
            self.axis = [int(a) for a in axis]
        else:
            raise TypeError(f"Expected an int or a list/tuple of ints for the argument 'axis', "
                            f"but received: {axis!r}")
        self.epsilon = _check_float(epsilon, "epsilon")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.gamma = self.beta = None

    def build(self, input_shape):
        rank = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if any(not -rank <= a < rank for a in axes):
            raise ValueError(f'LayerNormalization layer "{self.name}": axis {self.axis} is out '
                             f"of range for input shape {tuple(input_shape)}")
        self._axes = sorted(a % rank for a in axes)
        shape = tuple(input_shape[a] for a in self._axes)
        if any(d is None for d in shape):
            raise ValueError(f'LayerNormalization layer "{self.name}": the normalized axes of '
                             f"the input shape {tuple(input_shape)} must be defined")
        if self.scale:
            self.gamma = self.add_weight(shape, self.gamma_initializer, name="gamma")
        if self.center:
            self.beta = self.add_weight(shape, self.beta_initializer, name="beta")
        self.input_spec = InputSpec(ndim=rank)

    def call(self, inputs):
        rank = inputs.type.rank
        bshape = tuple(inputs.shape[i] if i in self._axes else 1 for i in range(rank))

        def bcast(v):
            v = ops.convert(v)
            return v if self._axes == [rank - 1] else ops.reshape(v, bshape)

        mean, var = ops.moments(inputs, axes=tuple(self._axes), keepdims=True)
        inv = ops.rsqrt(ops.add(var, self.epsilon))
        if self.gamma is not None:
            inv = ops.multiply(inv, bcast(self.gamma))
        res = ops.negative(ops.multiply(mean, inv))
        if self.beta is not None:
            res = ops.add(res, bcast(self.beta))
        return ops.add(ops.multiply(inputs, inv), res)
