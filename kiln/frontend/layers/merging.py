"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot,
and their functional forms (``kiln.layers.add([a, b])``, ...).

As Keras' ``Merge``: called on a list of tensors; inputs of different ranks get axes
of size 1 inserted after the batch axis until the ranks agree, then combine with
broadcasting (batch axes must agree).
"""
from __future__ import annotations

import functools

from .. import ops
from .arguments import is_int
from .base import Layer


def _fmt(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class _Merge(Layer):
    min_inputs = 1

    def build(self, input_shape):
        if not isinstance(input_shape, list) or not all(isinstance(s, tuple) for s in input_shape):
            raise ValueError(f'A merge layer ({type(self).__name__} "{self.name}") should be '
                             f"called on a list of inputs. Received: input_shape={input_shape}")
        if len(input_shape) < self.min_inputs:
            raise ValueError(f'A `{type(self).__name__}` layer ("{self.name}") should be called '
                             f"on a list of at least {self.min_inputs} inputs. Got "
                             f"{len(input_shape)} inputs.")
        self._check_shapes(input_shape)

    def _check_shapes(self, shapes):
        out = list(shapes[0][1:])
        for s in shapes[1:]:
            a, b = out, list(s[1:])
            if len(a) < len(b):
                a, b = b, a
            b = [1] * (len(a) - len(b)) + b
            merged = []
            for x, y in zip(a, b):
                if x is None or y is None:
                    merged.append(x if y in (1, None) else y)
                elif x != y and 1 not in (x, y):
                    raise ValueError(f'{type(self).__name__} layer "{self.name}": inputs have '
                                     f"incompatible shapes. Received shapes "
                                     f"{', '.join(_fmt(t) for t in shapes)}")
                else:
                    merged.append(max(x, y) if 1 in (x, y) else x)
            out = merged

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f'A merge layer ({type(self).__name__} "{self.name}") should be '
                             f"called on a list of inputs.")
        xs = [ops.convert(x) for x in inputs]
        top = max(x.type.rank for x in xs)
        xs = [x if x.type.rank == top else ops.reshape(
            x, (x.shape[0],) + (1,) * (top - x.type.rank) + tuple(x.shape[1:])) for x in xs]
        return self._merge(xs)


class Add(_Merge):
    def _merge(self, xs):
        return functools.reduce(ops.add, xs)


class Subtract(_Merge):
    min_inputs = 2

    def build(self, input_shape):
        super().build(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f'A `Subtract` layer ("{self.name}") should be called on exactly 2 '
                             f"inputs. Received: {len(input_shape)} inputs")

    def _merge(self, xs):
        return ops.subtract(xs[0], xs[1])


class Multiply(_Merge):
    def _merge(self, xs):
        return functools.reduce(ops.multiply, xs)


class Average(_Merge):
    def _merge(self, xs):
        return ops.divide(functools.reduce(ops.add, xs), float(len(xs)))


class Maximum(_Merge):
    def _merge(self, xs):
        return functools.reduce(ops.maximum, xs)


class Minimum(_Merge):
    def _merge(self, xs):
        return functools.reduce(ops.minimum, xs)


class Concatenate(_Merge):
    """Join the inputs along ``axis``; every other dimension must agree."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not is_int(axis):
            raise ValueError(f"Concatenate: `axis` must be an integer, got axis={axis!r}")
        self.axis = int(axis)

    def _check_shapes(self, shapes):
        ranks = {len(s) for s in shapes}
        bad = len(ranks) != 1
        if not bad:
            rank = ranks.pop()
            ax = self.axis % rank if -rank <= self.axis < rank else None
            bad = ax is None or any(
                len({s[i] for s in shapes} - {None}) > 1 for i in range(rank) if i != ax)
        if bad:
            raise ValueError(f'Concatenate layer "{self.name}": a `Concatenate` layer requires '
                             f"inputs with matching shapes except for the concatenation axis "
                             f"(axis={self.axis}). Received: input_shape="
                             f"[{', '.join(_fmt(s) for s in shapes)}]")

    def call(self, inputs):
        return ops.concatenate(list(inputs), axis=self.axis)


class Dot(_Merge):
    """Dot product of two samples along ``axes`` (Keras' ``batch_dot``); with
    ``normalize``, the samples are L2-normalized first (cosine proximity)."""
    min_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if not is_int(axes):
            if not isinstance(axes, (list, tuple)):
                raise TypeError(f"Invalid type for argument `axes`: it should be a list or an "
                                f"int. Received: axes={axes}")
            if len(axes) != 2:
                raise ValueError(f"Invalid format for argument `axes`: it should contain two "
                                 f"elements. Received: axes={axes}")
            if not all(is_int(a) for a in axes):
                raise ValueError(f"Invalid format for argument `axes`: list elements should be "
                                 f"integers. Received: axes={axes}")
        self.axes = axes if is_int(axes) else tuple(int(a) for a in axes)
        self.normalize = bool(normalize)

    def _resolve(self, r1, r2):
        if is_int(self.axes):
            return ([self.axes % r1, self.axes % r2] if self.axes < 0 else [self.axes] * 2)
        return [a % r if a < 0 else a for a, r in zip(self.axes, (r1, r2))]

    def _check_shapes(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f'A `Dot` layer ("{self.name}") should be called on a list of 2 '
                             f"inputs. Received: input_shape={shapes}")
        s1, s2 = shapes
        a1, a2 = self._resolve(len(s1), len(s2))
        if 0 in (a1, a2):
            raise ValueError(f'Dot layer "{self.name}": cannot perform batch_dot over axis 0.')
        if a1 >= len(s1) or a2 >= len(s2) or s1[a1] != s2[a2]:
            raise ValueError(f'Dot layer "{self.name}": incompatible input shapes: axis values '
                             f"{s1[a1] if a1 < len(s1) else '?'} (at axis {a1}) != "
                             f"{s2[a2] if a2 < len(s2) else '?'} (at axis {a2}). Full input "
                             f"shapes: {_fmt(s1)}, {_fmt(s2)}")

    def call(self, inputs):
        x, y = (ops.convert(v) for v in inputs)
        a0, a1 = self._resolve(x.type.rank, y.type.rank)
        if self.normalize:
            x, y = ops.normalize(x, axis=a0), ops.normalize(y, axis=a1)
        return batch_dot(x, y, (a0, a1))


def batch_dot(x, y, axes):
    """Keras' ``batch_dot`` for two batched tensors and two (positive) axes."""
    xr, yr = x.type.rank, y.type.rank
    a0, a1 = axes
    if xr == 2:
        x, a0 = ops.expand_dims(x, 1), a0 + 1
    if yr == 2:
        y = ops.expand_dims(y, 2)
    xn, yn = x.type.rank, y.type.rank
    if a0 != xn - 1:   # the contracted axis of x goes last
        x = ops.transpose(x, [i for i in range(xn) if i != a0] + [a0])
    if a1 != 1:        # the contracted axis of y goes to position 1
        y = ops.transpose(y, [0, a1] + [i for i in range(1, yn) if i != a1])
    x_mid, y_trail = tuple(x.shape[1:-1]), tuple(y.shape[2:])
    if xn > 3:
        x = ops.reshape(x, (x.shape[0], -1, x.shape[-1]))
    if yn > 3:
        y = ops.reshape(y, (y.shape[0], y.shape[1], -1))
    out = ops.matmul(x, y)
    if xn > 3 or yn > 3:
        out = ops.reshape(out, (out.shape[0],) + x_mid + y_trail)
    if xr == 2:
        out = ops.squeeze(out, 1)
    elif yr == 2:
        out = ops.squeeze(out, -1)
    return out


def _functional(cls):
    def fn(inputs, **kwargs):
        return cls(**kwargs)(inputs)
    fn.__name__ = cls.__name__.lower()
    fn.__doc__ = f"Functional interface to the `{cls.__name__}` layer."
    return fn


add, subtract, multiply = _functional(Add), _functional(Subtract), _functional(Multiply)
average, maximum, minimum = _functional(Average), _functional(Maximum), _functional(Minimum)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional interface to the `Concatenate` layer."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, **kwargs):
    """Functional interface to the `Dot` layer."""
    return Dot(axes=axes, **kwargs)(inputs)
