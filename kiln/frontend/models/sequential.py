"""``Sequential``: a plain stack of layers."""
from __future__ import annotations

from ...ir.graph import Graph
from ...ir.types import TensorType
from ..layers.base import Layer
from ..layers.input_layer import InputLayer, KerasTensor
from ..naming import ir_name
from ..shapes import to_dtype, to_ir_shape
from .model import Model


class Sequential(Model):
    """``kiln.Sequential([kiln.Input(shape=(784,)), kiln.layers.Dense(10), ...])``.

    The input shape comes from an ``Input`` first element, ``input_shape=`` on the first
    layer, ``build(input_shape)``, or -- lazily, as Keras -- the first array the model is
    called or predicted on. Once it is known, every layer is built by tracing the stack
    through the IR builder.
    """

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        self._input_layer = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_rebuild()

    # -- structure ----------------------------------------------------------------------
    def add(self, layer, rebuild=True):
        if isinstance(layer, KerasTensor):
            layer = layer._input_layer
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._layers:
                raise ValueError(f'Sequential model "{self.name}": an Input can only be the first '
                                 f"element (the model already has "
                                 f"{'an input' if self._input_layer is not None else 'layers'})")
            self._input_layer = layer
        elif not isinstance(layer, Layer):
            raise ValueError(f"Only instances of `kiln.layers.Layer` can be added to a Sequential "
                             f"model. Received: {layer!r} (of type {type(layer)})")
        else:
            if any(layer.name == l.name for l in self._layers):
                raise ValueError(f"All layers added to a Sequential model should have unique "
                                 f"names. Name '{layer.name}' is already the name of a layer in "
                                 f"this model. Update the `name` argument to pass a unique name.")
            if not self._layers and self._input_layer is None \
                    and layer._input_shape_arg is not None:
                self._input_layer = InputLayer(shape=layer._input_shape_arg)
            self._layers.append(layer)
        self._invalidate()
        self.built = False
        if rebuild:
            self._maybe_rebuild()

    def pop(self, rebuild=True):
        if not self._layers:
            raise IndexError("There are no layers in the model.")
        layer = self._layers.pop()
        self._invalidate()
        self.built = False
        if rebuild:
            self._maybe_rebuild()
        return layer

    @property
    def input_shape(self) -> tuple:
        if self._input_layer is None:
            raise AttributeError(f'Sequential model "{self.name}" has no defined input shape yet')
        return self._input_layer.batch_shape

    @property
    def output_shape(self) -> tuple:
        if not self.built:
            raise AttributeError(f'Sequential model "{self.name}" is not built yet')
        return self._last_output_shape

    # -- building -----------------------------------------------------------------------
    def build(self, input_shape=None):
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError("You must provide an `input_shape` argument.")
        elif self._input_layer is None or tuple(input_shape) != self._input_layer.batch_shape:
            if self._input_layer is not None:
                raise ValueError(f'Sequential model "{self.name}" was built for inputs of shape '
                                 f"{self._input_layer.batch_shape}; cannot rebuild it for "
                                 f"{tuple(input_shape)}")
            self._input_layer = InputLayer(batch_shape=input_shape)
            self._invalidate()
        self._build_by_tracing()

    def _maybe_rebuild(self):
        if self._input_layer is not None:
            self._build_by_tracing()

    def _build_by_tracing(self):
        """Build every layer (and record its output shape) by tracing the stack."""
        (name, shape, dtype), = self._input_specs()
        g = Graph(ir_name(self.name))
        x = g.add_input(ir_name(name), TensorType(to_ir_shape(shape), dtype))
        with g.building():
            (out,) = self._trace([x], training=False)
        self._last_output_shape = tuple(None if isinstance(d, str) else d for d in out.shape)
        self.built = True
        self._build_input_shape = shape

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(input_shape)

    # -- what lowering needs ------------------------------------------------------------
    def _input_specs(self) -> list:
        if self._input_layer is None:
            raise ValueError(f'Sequential model "{self.name}" has not been built: its input shape '
                             f"is unknown. Start it with kiln.Input(shape=...), give the first "
                             f"layer input_shape=..., call model.build((None, ...)), or call or "
                             f"predict it on data first.")
        il = self._input_layer
        return [(il.name, il.batch_shape, to_dtype(il.dtype))]

    def _trace(self, inputs, training=False) -> list:
        (x,) = inputs
        for layer in self._layers:
            x = layer(x, training=training)
        return [x]
