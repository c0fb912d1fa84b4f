"""Lowering a model to the IR: ``kiln.lower(model) -> kiln.ir.Graph``.

The graph is named after the model, has one input per model input (named after the
``Input``, typed ``f32[N, *shape]``; the batch dimension is the symbol ``N``), one
``param`` per weight the layers use (``%dense.kernel`` ..., holding its current value),
the layers' ops in call order, and the model's outputs.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.types import TensorType
from .naming import ir_name
from .shapes import to_ir_shape


def lower(model, training: bool = False) -> Graph:
    """Lower a built model (e.g. ``kiln.Sequential``) to an inference graph, or with
    ``training=True`` to its training-mode forward graph: layers trace their training
    branch (Dropout draws masks from the graph's counter-based RNG, ``%rng.counter``,
    which the graph advances by one per run; BatchNormalization normalizes with batch
    statistics and updates its moving statistics with ``kiln.ops.assign``), so the
    graph has state updates. The loss, backward pass and optimizer update are added
    on top of it by kiln/runtime/training.py."""
    specs = model._input_specs()
    g = Graph(name=ir_name(model.name))
    inputs = [g.add_input(ir_name(name), TensorType(to_ir_shape(shape), dtype))
              for name, shape, dtype in specs]
    with g.building():
        outputs = model._trace(inputs, training=bool(training))
    g.set_outputs(outputs)
    return g
