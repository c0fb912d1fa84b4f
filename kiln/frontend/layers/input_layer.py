"""``Input`` / ``InputLayer``: a model's input specification."""
from __future__ import annotations

from ..shapes import dtype_name, standardize_shape
from .base import Layer


class KerasTensor:
    """The symbolic tensor ``kiln.Input(...)`` returns: a shape (batch dim first),
    a dtype and a name, produced by an ``InputLayer``."""

    def __init__(self, shape, dtype, name, input_layer):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name
        self._input_layer = input_layer

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse=False, name={self.name}>"


class InputLayer(Layer):
    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None,
                 **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if shape is not None and batch_shape is not None:
            raise ValueError("You cannot pass both `shape` and `batch_shape` at the same time.")
        if batch_size is not None and batch_shape is not None:
            raise ValueError("You cannot pass both `batch_size` and `batch_shape` at the same time.")
        if shape is None and batch_shape is None:
            raise ValueError("You must pass a `shape` argument.")
        if shape is not None:
            shape = standardize_shape(shape, "shape")
            batch_shape = (batch_size,) + shape
        self.batch_shape = standardize_shape(batch_shape, "batch_shape")
        self.built = True
        self._last_output_shape = self.batch_shape
        self.output = KerasTensor(self.batch_shape, dtype_name(self._dtype), self.name, self)

    @property
    def shape(self) -> tuple:
        return self.batch_shape

    def call(self, inputs, training=False):
        return inputs


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None):
    """A model input: ``kiln.Input(shape=(784,))`` (the batch dimension is left out of
    ``shape``; it is ``None``, any size, unless ``batch_size`` is given)."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                      name=name).output
