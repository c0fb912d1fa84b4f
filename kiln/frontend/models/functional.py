"""``Functional``: the model ``kiln.Model(inputs, outputs)`` makes from a graph of
layer calls on symbolic tensors.

Construction walks back from the outputs through each KerasTensor's
``_keras_history`` (layer, node index, tensor index) to the inputs, as Keras 3's
``map_graph`` does, and keeps:

- the nodes in an order that computes every tensor before it is used (depth-first
  post-order from the outputs), checking that each node's inputs are computable from
  the model's inputs ("graph disconnected" otherwise);
- the layers ("operations") ordered as Keras orders them: by decreasing depth (the
  number of layer calls between a node and the outputs), then by the order a
  depth-first walk from the outputs first meets them. ``model.layers`` is that list
  (InputLayers included, as Keras 3), and so is the weight order.

Tracing (lowering, or the model used as a layer) replays the nodes on IR Values: each
node calls its layer on the Values its KerasTensors stand for, so a layer called twice
appears twice in the graph with one set of weights (shared), and a model used as a
layer is traced through. The lowered graph has one input per model input (named after
its Input) and one output per (flattened) model output.
"""
from __future__ import annotations

import collections

from .. import tree
from ..layers.input_layer import InputLayer
from ..layers.node import KerasTensor
from .model import Model


def _build_map(inputs, outputs):
    """Nodes in a computable order, and each layer's first-visit index (Keras'
    ``_build_map``)."""
    finished, in_progress = set(), set()
    ordered, op_index = [], {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor):
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(node) in finished:
            return
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor} from layer '{layer.name}' is part of a cycle.")
        op_index.setdefault(layer, len(op_index))
        in_progress.add(id(node))
        if not node.is_input and id(tensor) not in input_ids:
            for t in node.input_tensors:
                visit(t)
        finished.add(id(node))
        in_progress.discard(id(node))
        ordered.append(node)

    for out in tree.flatten(outputs):
        visit(out)
    return ordered, op_index


def map_graph(inputs, outputs):
    """(nodes in computable order, nodes by depth, layers in Keras' order)."""
    ordered, op_index = _build_map(inputs, outputs)
    node_depth, op_depth = {}, {}
    for node in reversed(ordered):
        depth = node_depth.setdefault(node, 0)
        depth = max(depth, op_depth.get(node.layer, 0))
        op_depth[node.layer] = depth
        node_depth[node] = depth
        for parent in node.parent_nodes:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for t in inputs:   # inputs that do not reach the outputs still belong to the model
        layer = t._keras_history[0]
        if layer not in op_depth:
            op_depth[layer] = 0
            op_index[layer] = -1
            node_depth[layer._inbound_nodes[0]] = 0

    nodes_by_depth = collections.defaultdict(list)
    for node, depth in node_depth.items():
        nodes_by_depth[depth].append(node)
    ops_by_depth = collections.defaultdict(list)
    for layer, depth in op_depth.items():
        ops_by_depth[depth].append(layer)
    layers = []
    for depth in sorted(ops_by_depth, reverse=True):
        layers.extend(sorted(ops_by_depth[depth], key=lambda op: op_index[op]))

    computable = {id(t) for t in inputs}
    done = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            for t in node.input_tensors:
                if id(t) not in computable:
                    raise ValueError(f"Graph disconnected: cannot find parent for tensor {t} at "
                                     f"layer '{node.layer.name}'. The following previous "
                                     f"layers were accessed without issue: {done}")
            done.append(node.layer.name)
            if not node.is_input:   # an Input that is not a model input computes nothing
                computable.update(id(t) for t in node.output_tensors)
    names = [layer.name for layer in layers]
    for name in names:
        if names.count(name) != 1:
            raise ValueError(f'The name "{name}" is used {names.count(name)} times in the model. '
                             f"All layer names should be unique.")
    return ordered, dict(nodes_by_depth), layers


class Functional(Model):
    """A model defined by its input and output symbolic tensors (each a tensor, a list
    or a dict of them): ``kiln.Model(inputs=x, outputs=[y1, y2])``."""

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        Model.__init__(self, name=name, trainable=trainable, **kwargs)
        flat_in, flat_out = tree.flatten(inputs), tree.flatten(outputs)
        for what, flat in (("inputs", flat_in), ("outputs", flat_out)):
            bad = [t for t in flat if not isinstance(t, KerasTensor)]
            if bad or not flat:
                raise ValueError(f"All `{what}` values must be KerasTensors (from kiln.Input or "
                                 f"from calling layers on them). Received: {what}={bad or flat}")
        for t in flat_in:
            if not isinstance(t._keras_history[0], InputLayer):
                raise ValueError(f"Functional model inputs must come from `kiln.Input` (an "
                                 f"InputLayer); {t} comes from layer "
                                 f"'{t._keras_history[0].name}'")
        if len({id(t) for t in flat_in}) != len(flat_in):
            raise ValueError("The list of inputs passed to the model contains the same input "
                             "multiple times. All inputs should only appear once.")
        self._inputs_struct, self._outputs_struct = inputs, outputs
        self._inputs, self._outputs = flat_in, flat_out
        nodes, self._nodes_by_depth, layers = map_graph(flat_in, flat_out)
        self._nodes = [n for n in nodes if not n.is_input]
        self._layers = layers
        self.built = True
        self._build_input_shape = self.input_shape

    # -- Keras surface ----------------------------------------------------------------------
    @property
    def inputs(self) -> list:
        return list(self._inputs)

    @property
    def outputs(self) -> list:
        return list(self._outputs)

    @property
    def input(self):
        return self._inputs_struct

    @property
    def output(self):
        return self._outputs_struct

    @property
    def input_shape(self):
        return tree.map_structure(lambda t: t.shape, self._inputs_struct)

    @property
    def output_shape(self):
        return tree.map_structure(lambda t: t.shape, self._outputs_struct)

    def build(self, input_shape=None):
        """A functional model is built when it is made."""

    # -- what lowering needs ------------------------------------------------------------
    def _input_specs(self) -> list:
        from ..shapes import to_dtype
        return [(t._keras_history[0].name, t.shape, to_dtype(t.dtype)) for t in self._inputs]

    def _input_keys(self) -> list:
        if isinstance(self._inputs_struct, dict):
            return sorted(self._inputs_struct)
        return [t._keras_history[0].name for t in self._inputs]

    def _output_structure(self):
        return self._outputs_struct

    def _trace(self, inputs, training=False) -> list:
        env = {id(t): v for t, v in zip(self._inputs, inputs)}
        for node in self._nodes:
            def value(t):
                return env[id(t)] if isinstance(t, KerasTensor) else t
            args = [tree.map_structure(value, a) for a in node.args]
            kwargs = {k: tree.map_structure(value, v) for k, v in node.kwargs.items()}
            tr = node.training if node.training is not None else training
            out = node.layer._call_symbolic(args, kwargs, tr)
            for t, v in zip(node.output_tensors, tree.flatten(out)):
                env[id(t)] = v
        return [env[id(t)] for t in self._outputs]


def inject_functional(cls) -> None:
    """Make a ``kiln.Model`` subclass whose ``__init__`` calls
    ``super().__init__(inputs, outputs)`` a Functional model (as Keras does)."""
    if issubclass(cls, Functional):
        return
    if Model not in cls.__bases__:
        raise NotImplementedError(f"{cls.__name__}: functional construction (inputs, outputs) "
                                  f"is supported for direct subclasses of kiln.Model only")
    cls.__bases__ = tuple(Functional if b is Model else b for b in cls.__bases__)
