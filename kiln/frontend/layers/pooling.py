"""Pooling layers (channels_last): MaxPooling1D/2D, AveragePooling1D/2D (padding
'valid' or 'same' with Keras' arithmetic; ``strides=None`` means ``pool_size``), and the
global poolings (mean / max over the spatial axes, ``keepdims``)."""
from __future__ import annotations

from .. import ops
from .arguments import check_data_format, standardize_padding, standardize_tuple
from .base import Layer
from .input_spec import InputSpec


class _Pooling(Layer):
    rank = 2
    _op = None

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        r = self.rank
        self.pool_size = standardize_tuple(pool_size, r, "pool_size")
        self.strides = (self.pool_size if strides is None
                        else standardize_tuple(strides, r, "strides"))
        self.padding = standardize_padding(padding)
        self.data_format = check_data_format(data_format, type(self).__name__)
        self.input_spec = InputSpec(ndim=r + 2)

    def call(self, inputs):
        return getattr(ops, self._op)(inputs, self.pool_size, self.strides, self.padding)


class MaxPooling1D(_Pooling):
    rank, _op = 1, "max_pool"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(_Pooling):
    rank, _op = 2, "max_pool"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_Pooling):
    """Average pooling; with 'same', a window averages only the inputs it covers."""
    rank, _op = 1, "average_pool"


class AveragePooling2D(_Pooling):
    """Average pooling; with 'same', a window averages only the inputs it covers."""
    rank, _op = 2, "average_pool"


class _GlobalPooling(Layer):
    rank = 2
    _reduce = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        axes = tuple(range(1, self.rank + 1))
        return getattr(ops, self._reduce)(inputs, axis=axes, keepdims=self.keepdims)


class GlobalAveragePooling1D(_GlobalPooling):
    rank, _reduce = 1, "mean"


class GlobalAveragePooling2D(_GlobalPooling):
    rank, _reduce = 2, "mean"


class GlobalMaxPooling1D(_GlobalPooling):
    rank, _reduce = 1, "max"


class GlobalMaxPooling2D(_GlobalPooling):
    rank, _reduce = 2, "max"


MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
