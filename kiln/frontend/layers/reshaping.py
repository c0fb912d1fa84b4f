"""Reshaping layers: Permute, RepeatVector, ZeroPadding1D/2D, Cropping1D/2D,
UpSampling1D/2D (nearest) -- data movement over the non-batch axes (channels_last)."""
from __future__ import annotations

from .. import ops
from .arguments import check_data_format, is_int, standardize_tuple
from .base import Layer
from .input_spec import InputSpec


class Permute(Layer):
    """Permute the non-batch axes: ``dims`` is a permutation of 1..rank-1."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set of "
                             f"indices in `dims` must be consecutive and start from 1. "
                             f"Received dims={dims}")
        self.dims = dims
        self.input_spec = InputSpec(ndim=len(dims) + 1)

    def call(self, inputs):
        return ops.transpose(inputs, (0,) + self.dims)


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not is_int(n):
            raise TypeError(f"Expected an integer value for `n`, got {type(n)}.")
        self.n = int(n)
        self.input_spec = InputSpec(ndim=2)

    def call(self, inputs):
        x = ops.expand_dims(inputs, 1)
        return ops.broadcast_to(x, (inputs.shape[0], self.n, inputs.shape[1]))


def _pairs(value, rank: int, name: str) -> tuple:
    """An int, ``rank`` ints (symmetric) or ``rank`` pairs -> ``rank`` (lo, hi) pairs."""
    if is_int(value):
        return ((int(value), int(value)),) * rank
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if rank == 1 and items is not None and len(items) == 2 and all(is_int(v) for v in items):
        return (standardize_tuple(items, 2, name, allow_zero=True),)
    if items is None or len(items) != rank:
        raise ValueError(f"`{name}` should be an int, a tuple of {rank} ints or a tuple of "
                         f"{rank} tuples of 2 ints. Received: {name}={value!r}.")
    nth = ("1st", "2nd", "3rd")
    return tuple(standardize_tuple(v, 2, f"{nth[i]} entry of {name}", allow_zero=True)
                 for i, v in enumerate(items))


class _Spatial(Layer):
    rank = 2

    def _init_spatial(self, data_format):
        self.data_format = check_data_format(data_format, type(self).__name__)
        self.input_spec = InputSpec(ndim=self.rank + 2)


class ZeroPadding1D(_Spatial):
    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, 1, "padding")[0]
        self._init_spatial(data_format)

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0), self.padding, (0, 0)))


class ZeroPadding2D(_Spatial):
    """Pad rows and columns with zeros: ``padding`` is an int, (sym_h, sym_w) or
    ((top, bottom), (left, right))."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, 2, "padding")
        self._init_spatial(data_format)

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0),) + self.padding + ((0, 0),))


class _Cropping(_Spatial):
    def build(self, input_shape):
        for a, (lo, hi) in enumerate(self.cropping):
            d = input_shape[1 + a] if len(input_shape) > 1 + a else None
            if d is not None and lo + hi >= d:
                raise ValueError(f"Values in `cropping` argument should be smaller than the "
                                 f"corresponding spatial dimension of the input. Received: "
                                 f"input_shape={tuple(input_shape)}, cropping={self.cropping}")

    def call(self, inputs):
        starts, sizes = [0], [-1]
        for a, (lo, hi) in enumerate(self.cropping):
            starts.append(lo)
            sizes.append(inputs.shape[1 + a] - lo - hi)
        return ops.slice(inputs, starts + [0], sizes + [-1])


class Cropping1D(_Cropping):
    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, 1, "cropping")
        self._init_spatial(None)


class Cropping2D(_Cropping):
    """Crop rows and columns: ``cropping`` is an int, (sym_h, sym_w) or
    ((top, bottom), (left, right))."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, 2, "cropping")
        self._init_spatial(data_format)


class UpSampling1D(_Spatial):
    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = standardize_tuple(size, 1, "size")[0]
        self._init_spatial(None)

    def call(self, inputs):
        return ops.repeat(inputs, self.size, axis=1)


class UpSampling2D(_Spatial):
    """Repeat rows ``size[0]`` and columns ``size[1]`` times (nearest neighbour)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = standardize_tuple(size, 2, "size")
        if interpolation != "nearest":
            raise NotImplementedError(f"UpSampling2D: interpolation={interpolation!r} is not "
                                      f"supported by kiln (only 'nearest')")
        self.interpolation = interpolation
        self._init_spatial(data_format)

    def call(self, inputs):
        return ops.repeat(ops.repeat(inputs, self.size[0], axis=1), self.size[1], axis=2)
