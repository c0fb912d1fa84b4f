"""Convolution layers (channels_last): Conv1D, Conv2D, Conv1DTranspose, Conv2DTranspose,
DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D.

Weights are laid out exactly as Keras 3 lays them out (so Keras weights load
unchanged): Conv kernel ``(*kernel_size, in/groups, filters)``; ConvTranspose kernel
``(*kernel_size, filters, in)``; Depthwise ``kernel (*kernel_size, in, depth_multiplier)``;
Separable ``depthwise_kernel (*kernel_size, in, dm)`` and ``pointwise_kernel (1.., in*dm,
filters)``; then ``bias``. ``call`` is ``kiln.ops`` (conv / conv_transpose /
depthwise_conv), which computes Keras' 'same' / 'causal' padding arithmetic.
"""
from __future__ import annotations

from .. import activations as _activations
from .. import initializers as _initializers
from .. import ops
from ..ops_nn import conv2d_explicit, conv_pads
from .arguments import (check_data_format, positive_int, standardize_padding, standardize_tuple,
                        unsupported)
from .base import Layer
from .input_spec import InputSpec


class _Conv(Layer):
    """Shared by the convolution layers: argument checks, the bias and activation."""

    rank = 2

    def _init_conv(self, kernel_size, strides, padding, data_format, dilation_rate, activation,
                   use_bias, bias_initializer, allow_causal=False, check_dilation=True, **extra):
        name = type(self).__name__
        unsupported(name, **extra)
        r = self.rank
        self.kernel_size = standardize_tuple(kernel_size, r, "kernel_size")
        self.strides = standardize_tuple(strides, r, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, r, "dilation_rate")
        self.padding = standardize_padding(padding, allow_causal=allow_causal)
        self.data_format = check_data_format(data_format, name)
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.bias = None
        if check_dilation and max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"`strides > 1` not supported in conjunction with `dilation_rate > "
                             f"1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.input_spec = InputSpec(ndim=r + 2)

    def _channels(self, input_shape) -> int:
        if len(input_shape) != self.rank + 2:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: '
                             f"expected ndim={self.rank + 2}, found ndim={len(input_shape)}. "
                             f"Full shape received: {tuple(input_shape)}")
        c = input_shape[-1]
        if c is None:
            raise ValueError(f'{type(self).__name__} layer "{self.name}": the channel dimension '
                             f"of the inputs must be defined. Received input shape {input_shape}")
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: c})
        return c

    def _add_bias(self, n):
        if self.use_bias:
            self.bias = self.add_weight(shape=(n,), initializer=self.bias_initializer, name="bias")

    def _finish(self, y):
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y)


class _BaseConv(_Conv):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, lora_rank=None, lora_alpha=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters")
        self.groups = positive_int(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(f"The number of filters must be evenly divisible by the number of "
                             f"groups. Received: groups={groups}, filters={filters}.")
        self._init_conv(kernel_size, strides, padding, data_format, dilation_rate, activation,
                        use_bias, bias_initializer, allow_causal=self.rank == 1,
                        kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                        activity_regularizer=activity_regularizer,
                        kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                        lora_rank=lora_rank, lora_alpha=lora_alpha)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.kernel = None

    def build(self, input_shape):
        c = self._channels(input_shape)
        if c % self.groups:
            raise ValueError(f"The number of input channels must be evenly divisible by the "
                             f"number of groups. Received groups={self.groups}, but the input "
                             f"has {c} channels (full input shape is {tuple(input_shape)}).")
        self.kernel = self.add_weight(shape=self.kernel_size + (c // self.groups, self.filters),
                                      initializer=self.kernel_initializer, name="kernel")
        self._add_bias(self.filters)

    def call(self, inputs):
        spatial = tuple(inputs.shape[1:1 + self.rank])
        pads = conv_pads(spatial, self.kernel_size, self.strides, self.dilation_rate,
                         self.padding)
        y = conv2d_explicit(inputs, ops.convert(self.kernel), self.strides, pads,
                            self.dilation_rate, self.groups)
        return self._finish(y)


class Conv1D(_BaseConv):
    """1D convolution over (batch, steps, channels); ``padding`` may be 'causal'."""
    rank = 1


class Conv2D(_BaseConv):
    """2D convolution over (batch, height, width, channels)."""
    rank = 2


class _BaseConvTranspose(_Conv):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters")
        self._init_conv(kernel_size, strides, padding, data_format, dilation_rate, activation,
                        use_bias, bias_initializer, check_dilation=False,
                        kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                        activity_regularizer=activity_regularizer,
                        kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = standardize_tuple(output_padding, self.rank, "output_padding",
                                                    allow_zero=True)
            for s, p in zip(self.strides, self.output_padding):
                if p >= s:
                    raise ValueError(f"Strides must be greater than output padding. Received "
                                     f"strides={self.strides}, "
                                     f"output_padding={self.output_padding}.")
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.kernel = None

    def build(self, input_shape):
        c = self._channels(input_shape)
        self.kernel = self.add_weight(shape=self.kernel_size + (self.filters, c),
                                      initializer=self.kernel_initializer, name="kernel")
        self._add_bias(self.filters)

    def call(self, inputs):
        y = ops.conv_transpose(inputs, self.kernel, self.strides, self.padding,
                               self.output_padding, None, self.dilation_rate)
        return self._finish(y)


class Conv1DTranspose(_BaseConvTranspose):
    rank = 1


class Conv2DTranspose(_BaseConvTranspose):
    """Transposed convolution with Keras' output size (``deconv_output_length``) and
    TensorFlow's placement of the result."""
    rank = 2


class _BaseDepthwiseConv(_Conv):
    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier")
        self._init_conv(kernel_size, strides, padding, data_format, dilation_rate, activation,
                        use_bias, bias_initializer, depthwise_regularizer=depthwise_regularizer,
                        bias_regularizer=bias_regularizer,
                        activity_regularizer=activity_regularizer,
                        depthwise_constraint=depthwise_constraint,
                        bias_constraint=bias_constraint)
        self.depthwise_initializer = _initializers.get(depthwise_initializer)
        self.kernel = None

    def build(self, input_shape):
        c = self._channels(input_shape)
        self.kernel = self.add_weight(shape=self.kernel_size + (c, self.depth_multiplier),
                                      initializer=self.depthwise_initializer, name="kernel")
        self._add_bias(c * self.depth_multiplier)

    def call(self, inputs):
        y = ops.depthwise_conv(inputs, self.kernel, self.strides, self.padding, None,
                               self.dilation_rate)
        return self._finish(y)


class DepthwiseConv1D(_BaseDepthwiseConv):
    rank = 1


class DepthwiseConv2D(_BaseDepthwiseConv):
    """Each input channel convolved with its own ``depth_multiplier`` filters; output
    channel ``c * depth_multiplier + m``. The weight is ``kernel`` (Keras 3's name)."""
    rank = 2


class _BaseSeparableConv(_Conv):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters")
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier")
        self._init_conv(kernel_size, strides, padding, data_format, dilation_rate, activation,
                        use_bias, bias_initializer, depthwise_regularizer=depthwise_regularizer,
                        pointwise_regularizer=pointwise_regularizer,
                        bias_regularizer=bias_regularizer,
                        activity_regularizer=activity_regularizer,
                        depthwise_constraint=depthwise_constraint,
                        pointwise_constraint=pointwise_constraint,
                        bias_constraint=bias_constraint)
        self.depthwise_initializer = _initializers.get(depthwise_initializer)
        self.pointwise_initializer = _initializers.get(pointwise_initializer)
        self.depthwise_kernel = self.pointwise_kernel = None

    def build(self, input_shape):
        c = self._channels(input_shape)
        dm = self.depth_multiplier
        self.depthwise_kernel = self.add_weight(shape=self.kernel_size + (c, dm),
                                                initializer=self.depthwise_initializer,
                                                name="depthwise_kernel")
        self.pointwise_kernel = self.add_weight(shape=(1,) * self.rank + (c * dm, self.filters),
                                                initializer=self.pointwise_initializer,
                                                name="pointwise_kernel")
        self._add_bias(self.filters)

    def call(self, inputs):
        y = ops.separable_conv(inputs, self.depthwise_kernel, self.pointwise_kernel,
                               self.strides, self.padding, None, self.dilation_rate)
        return self._finish(y)


class SeparableConv1D(_BaseSeparableConv):
    rank = 1


class SeparableConv2D(_BaseSeparableConv):
    """A depthwise convolution followed by a pointwise (1x1) convolution."""
    rank = 2


Convolution1D, Convolution2D = Conv1D, Conv2D
Convolution2DTranspose = Conv2DTranspose
SeparableConvolution2D = SeparableConv2D
