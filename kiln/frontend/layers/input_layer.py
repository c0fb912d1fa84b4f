"""``Input`` / ``InputLayer``: a model's input specification."""
from __future__ import annotations

from ..shapes import dtype_name, standardize_shape
from .base import Layer
from .node import KerasTensor, Node


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
        self.output = KerasTensor(self.batch_shape, dtype_name(self._dtype), self.name,
                                  history=(self, 0, 0))
        self._inbound_nodes = [Node(self, outputs=self.output)]

    @property
    def shape(self) -> tuple:
        return self.batch_shape

    def call(self, inputs):
        return inputs


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None):
    """A model input: ``kiln.Input(shape=(784,))`` (the batch dimension is left out of
    ``shape``; it is ``None``, any size, unless ``batch_size`` is given)."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                      name=name).output
