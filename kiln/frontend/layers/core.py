"""Core layers: Dense, Activation, Dropout, Flatten, Reshape."""
from __future__ import annotations

import numpy as np

from .. import activations as _activations
from .. import initializers as _initializers
from .. import ops
from .. import random as _random
from .base import Layer
from .input_spec import InputSpec


class Dense(Layer):
    """``activation(inputs @ kernel + bias)``; the kernel is ``(input_dim, units)`` and the
    last axis of the inputs is contracted (inputs of any rank >= 2)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units!r}")
        self.units = int(units)
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f'Dense layer "{self.name}" expects inputs of rank >= 2 (batch, ..., '
                             f"features), got input shape {input_shape}")
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f'Dense layer "{self.name}": the last dimension of the inputs must be '
                             f"defined, got input shape {input_shape}")
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})
        self.kernel = self.add_weight(shape=(input_dim, self.units),
                                      initializer=self.kernel_initializer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.units,), initializer=self.bias_initializer,
                                        name="bias")

    def call(self, inputs, training=False):
        if inputs.dtype is not self._dtype:
            inputs = ops.cast(inputs, self._dtype)
        y = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y)


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activations.get(activation)

    def call(self, inputs, training=False):
        return self.activation(inputs)


class Dropout(Layer):
    """Inverted dropout: in training, zero a fraction ``rate`` and scale the rest by
    ``1/(1-rate)``; at inference, the identity."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) \
                or not 0 <= rate < 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float value "
                             f"between 0 and 1 (0 <= rate < 1). Received: rate={rate!r}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._rng_seed = _random.draw_seed() if seed is None else int(seed) % 2**63

    def call(self, inputs, training=False):
        if training and self.rate > 0:   # masks from the graph's counter-based RNG
            return _random.dropout(inputs, self.rate, self.noise_shape, self._rng_seed)
        return inputs


class Flatten(Layer):
    """``(batch, d1, d2, ...) -> (batch, d1*d2*...)``; ``(batch,) -> (batch, 1)``."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise NotImplementedError(f"Flatten: data_format={data_format!r} is not supported "
                                      f"(only channels_last)")
        self.data_format = "channels_last"

    def call(self, inputs, training=False):
        return ops.reshape(inputs, (inputs.shape[0], -1))


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (batch dim kept); one entry may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target = tuple(target_shape)
        except TypeError:
            target = (target_shape,)
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or (d < 1 and d != -1)
               for d in target):
            raise ValueError(f"Reshape: target_shape must be a tuple of positive integers (one of "
                             f"them may be -1), got target_shape={target_shape!r}")
        if target.count(-1) > 1:
            raise ValueError(f"Reshape: target_shape may contain at most one -1, got "
                             f"target_shape={target_shape!r}")
        self.target_shape = tuple(int(d) for d in target)

    def call(self, inputs, training=False):
        return ops.reshape(inputs, (inputs.shape[0],) + self.target_shape)
