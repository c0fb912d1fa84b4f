"""Symbolic tensors and layer-call nodes: the functional API's graph of layers.

``kiln.Input(...)`` returns a ``KerasTensor`` (a shape with the batch dimension
``None``, a dtype, no data). Calling a layer on KerasTensors traces the layer's
``call`` once through the IR builder (which builds the layer and infers the output
shapes), appends a ``Node`` to the layer's ``_inbound_nodes`` and returns new
KerasTensors. Each KerasTensor remembers where it came from in ``_keras_history``:
``(layer, node_index, tensor_index)``, as Keras 3 does; ``kiln.Model(inputs,
outputs)`` walks these histories back from the outputs (kiln/frontend/models/functional.py).
"""
from __future__ import annotations

from .. import tree
from ..naming import uniquify


class KerasTensor:
    """A symbolic tensor: ``shape`` (batch dim first, ``None`` = unknown), ``dtype``
    (``"float32"``, ...) and ``name``; ``_keras_history`` is ``(layer, node_index,
    tensor_index)`` of the layer call that produced it."""

    def __init__(self, shape, dtype, name=None, history=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name if name is not None else uniquify("keras_tensor")
        self._keras_history = history

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def _input_layer(self):
        """The InputLayer that made this tensor (None for other tensors)."""
        from .input_layer import InputLayer
        layer = self._keras_history[0] if self._keras_history else None
        return layer if isinstance(layer, InputLayer) else None

    def __repr__(self):
        return (f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse=False, "
                f"name={self.name}>")

    # Arithmetic on symbolic tensors would need layers for each op (Keras' op nodes);
    # kiln asks for a layer (Add, Multiply, ...) or a custom layer instead.
    def _no_ops(self, *args, **kwargs):
        raise TypeError("kiln: arithmetic on symbolic KerasTensors (the functional API) is not "
                        "supported; use merge layers (kiln.layers.Add, Multiply, ...) or put the "
                        "computation in a custom layer's call()")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _no_ops
    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __pow__ = __neg__ = _no_ops
    __getitem__ = _no_ops


class Node:
    """One call of ``layer``: the call's arguments (``args``, ``kwargs``; KerasTensors
    among them are the node's inputs), its ``outputs`` (a KerasTensor or a structure of
    them), and ``training`` when the call fixed it explicitly (else None: the model's
    training flag applies)."""

    def __init__(self, layer, args=(), kwargs=None, outputs=None, training=None):
        self.layer = layer
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.outputs = outputs
        self.training = training
        self.input_tensors = [t for t in tree.flatten([list(self.args), self.kwargs])
                              if isinstance(t, KerasTensor)]
        self.output_tensors = [t for t in tree.flatten(outputs) if isinstance(t, KerasTensor)]

    @property
    def is_input(self) -> bool:
        return not self.input_tensors

    @property
    def parent_nodes(self) -> list:
        out = []
        for t in self.input_tensors:
            layer, index, _ = t._keras_history
            node = layer._inbound_nodes[index]
            if node not in out:
                out.append(node)
        return out

    def __repr__(self):
        return f"<Node {self.layer.name} ({len(self.input_tensors)} inputs)>"
