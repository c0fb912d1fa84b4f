"""Preprocessing layers: Rescaling and Normalization (with ``adapt``)."""
from __future__ import annotations

import numpy as np

from .. import ops
from .arguments import is_int
from .base import Layer


class Rescaling(Layer):
    """``inputs * scale + offset`` (inputs cast to the layer's float dtype first; scale
    and offset may be per-channel arrays)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset

    def call(self, inputs):
        x = inputs if inputs.dtype is self._dtype else ops.cast(inputs, self._dtype)
        scale = np.asarray(self.scale, dtype=self._dtype.np)
        offset = np.asarray(self.offset, dtype=self._dtype.np)
        return ops.add(ops.multiply(x, scale), offset)


class Normalization(Layer):
    """``(inputs - mean) / maximum(sqrt(variance), 1e-7)`` per feature along ``axis``
    (``invert=True``: ``mean + inputs * maximum(sqrt(variance), 1e-7)``).

    With ``mean`` and ``variance`` given, they are constants and the layer has no
    weights (as Keras). Otherwise it has the non-trainable weights ``mean``,
    ``variance`` and ``count`` (an int64 scalar kept for Keras' file layout), which
    ``adapt(data)`` sets to the data's mean and (biased) variance over the other axes.
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif is_int(axis):
            axis = (int(axis),)
        else:
            axis = tuple(int(a) for a in axis)
        self.axis = axis
        if (mean is None) != (variance is None):
            raise ValueError(f"When setting values directly, both `mean` and `variance` must be "
                             f"set. Received: mean={mean} and variance={variance}")
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(f"When setting values directly, `mean` and `variance` must have "
                                 f"the same shape. Received: mean shape {np.shape(mean)} and "
                                 f"variance shape {np.shape(variance)}")
            if len(np.shape(mean)) > len(self.axis):
                raise ValueError(f"The rank of `mean` must be less than or equal to the number "
                                 f"of axes ({len(self.axis)}). Received: mean shape "
                                 f"{np.shape(mean)} for axis {self.axis}")
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        self.adapt_mean = self.adapt_variance = self.count = None

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). Received "
                             f"inputs with ndim={ndim}, while axis={self.axis}")
        self._keep_axis = tuple(sorted(a % ndim for a in self.axis))
        for d in self._keep_axis:
            if input_shape[d] is None:
                raise ValueError(f"All `axis` values to be kept must have a known shape. "
                                 f"Received axis={self.axis}, inputs.shape={tuple(input_shape)}, "
                                 f"with unknown axis at index {d}")
        self._reduce_axis = tuple(d for d in range(ndim) if d not in self._keep_axis)
        self._broadcast_shape = tuple(input_shape[d] if d in self._keep_axis else 1
                                      for d in range(ndim))
        shape = tuple(input_shape[d] for d in self._keep_axis)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(shape, "zeros", name="mean", trainable=False)
            self.adapt_variance = self.add_weight(shape, "ones", name="variance", trainable=False)
            self.count = self.add_weight((), "zeros", dtype="int64", name="count",
                                         trainable=False)

    def adapt(self, data):
        """Set ``mean`` and ``variance`` from ``data``: an array of samples, or an
        iterable of batches (the statistics of all of them together)."""
        if not isinstance(data, np.ndarray) and hasattr(data, "__iter__"):
            batches = [np.asarray(b) for b in data]
            if not batches:
                raise ValueError("adapt() received an empty iterable (no batches)")
            data = np.concatenate(batches, axis=0)
        data = np.asarray(data)
        if data.ndim == 0:
            raise ValueError("Normalization.adapt expects an array of samples, got a scalar")
        if self.input_mean is not None:
            raise ValueError(f'Normalization layer "{self.name}": mean and variance were given; '
                             f"it cannot be adapted")
        if not self.built:
            self._maybe_build((None,) + data.shape[1:])
        else:
            for d in self._keep_axis:
                if data.shape[d] != self._build_input_shape[d]:
                    raise ValueError(f"The layer was built with input_shape="
                                     f"{self._build_input_shape}, but adapt() is being called "
                                     f"with data with an incompatible shape, "
                                     f"data.shape={data.shape}")
        x = data.astype(np.float64)
        self.adapt_mean.assign(np.mean(x, axis=self._reduce_axis).astype(np.float32))
        self.adapt_variance.assign(np.var(x, axis=self._reduce_axis).astype(np.float32))

    def call(self, inputs):
        x = inputs if inputs.dtype is self._dtype else ops.cast(inputs, self._dtype)
        if self.input_mean is not None:
            mean, var = (self._given(v) for v in (self.input_mean, self.input_variance))
        else:
            mean = ops.reshape(self.adapt_mean, self._broadcast_shape)
            var = ops.reshape(self.adapt_variance, self._broadcast_shape)
        std = ops.maximum(ops.sqrt(var), 1e-7)
        if self.invert:
            return ops.add(mean, ops.multiply(x, std))
        return ops.divide(ops.subtract(x, mean), std)

    def _given(self, value):
        """A given mean / variance, its dimensions aligned right to left with the kept
        axes (as Keras), broadcast to the inputs' rank."""
        v = np.asarray(value, self._dtype.np)
        if v.ndim:
            expanded = [1] * len(self._broadcast_shape)
            for i in range(1, v.ndim + 1):
                expanded[self._keep_axis[-i]] = v.shape[-i]
            v = v.reshape(expanded)
        return np.broadcast_to(v, self._broadcast_shape)
