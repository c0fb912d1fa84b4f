"""Sequential and Functional model configs in Keras' schema, both ways.

``functional_config`` writes Keras' Functional ``get_config``: every layer (InputLayers
included) with ``name`` and ``inbound_nodes`` (one ``{"args", "kwargs"}`` per call, the
symbolic tensors as ``__keras_tensor__`` entries with ``keras_history = [layer, node,
tensor]``), node indices renumbered over the nodes that belong to this model.
``functional_from_config`` creates the layers, then replays their calls (each layer's
nodes in order, deferring a node until its inputs exist), accepting Keras 3 nodes and
the legacy nested-list form ``[[name, node, tensor, kwargs], ...]``.
"""
from __future__ import annotations

import inspect
import warnings

from .serialization import (SavingError, _decode_value, deserialize, dtype_policy, serialize,
                            to_json)

def sequential_config(model) -> dict:
    layers = []
    if model._input_layer is not None:
        layers.append(serialize(model._input_layer))
    layers += [serialize(l) for l in model.layers]
    cfg = {"name": model.name, "trainable": model.trainable, "dtype": dtype_policy(model.dtype),
           "layers": layers}
    if model._input_layer is not None:
        cfg["build_input_shape"] = list(model._input_layer.batch_shape)
    return cfg


def _tensor_json(t, reindex):
    layer, node_index, tensor_index = t._keras_history
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": t.dtype,
                       "keras_history": [layer.name, reindex.get((id(layer), node_index),
                                                                 node_index), tensor_index]}}


def _struct_json(x, fn):
    from ..frontend.layers.node import KerasTensor
    if isinstance(x, KerasTensor):
        return fn(x)
    if isinstance(x, (list, tuple)):
        return [_struct_json(e, fn) for e in x]
    if isinstance(x, dict):
        return {k: _struct_json(v, fn) for k, v in x.items()}
    return to_json(x)


def functional_config(model) -> dict:
    """Keras' Functional ``get_config``: layers with ``inbound_nodes``, node indices
    renumbered over the nodes that belong to this model."""
    in_model = {id(n) for n in model._nodes}
    in_model.update(id(t._keras_history[0]._inbound_nodes[0]) for t in model._inputs)
    reindex = {}
    for layer in model.layers:
        kept = 0
        for i, node in enumerate(layer._inbound_nodes):
            if id(node) in in_model:
                reindex[(id(layer), i)] = kept
                kept += 1

    def tensor(t):
        return _tensor_json(t, reindex)

    layers = []
    for layer in model.layers:
        d = serialize(layer)
        d["name"] = layer.name
        nodes = []
        for node in layer._inbound_nodes:
            if id(node) in in_model and not node.is_input:
                kwargs = {k: _struct_json(v, tensor) for k, v in node.kwargs.items()}
                if node.training is not None:
                    kwargs["training"] = bool(node.training)
                nodes.append({"args": _struct_json(list(node.args), tensor), "kwargs": kwargs})
        d["inbound_nodes"] = nodes
        layers.append(d)

    def history(t):
        layer, node_index, tensor_index = t._keras_history
        return [layer.name, reindex.get((id(layer), node_index), node_index), tensor_index]

    def struct(s):
        if isinstance(s, dict):
            return {k: history(v) for k, v in s.items()}
        if isinstance(s, (list, tuple)):
            return [history(t) for t in s]
        return history(s)
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": struct(model._inputs_struct),
            "output_layers": struct(model._outputs_struct)}



def sequential_from_config(cfg, custom_objects=None, safe_mode=True):
    from ..frontend.layers.input_layer import InputLayer
    from ..frontend.models import Sequential
    if isinstance(cfg, list):   # Keras 1 / 2.0 form: the config is the list of layers
        cfg = {"layers": cfg}
    model = Sequential(name=cfg.get("name"), trainable=cfg.get("trainable", True))
    layers = cfg.get("layers") or []
    for i, d in enumerate(layers):
        lcfg = d.get("config") or {}
        if i == 0 and d.get("class_name") != "InputLayer":
            shape = lcfg.get("batch_input_shape") or lcfg.get("batch_shape")
            if shape is not None:   # Keras 2: the first layer carries the input shape
                model.add(InputLayer(batch_shape=tuple(shape), dtype=_decode_value(
                    "dtype", lcfg.get("dtype"))), rebuild=False)
        if d.get("class_name") != "InputLayer":
            lcfg = {k: v for k, v in lcfg.items() if k not in ("batch_input_shape",
                                                                "batch_shape")}
            d = {**d, "config": lcfg, "build_config": None}
        model.add(deserialize(d, custom_objects, safe_mode), rebuild=False)
    if model._input_layer is None and cfg.get("build_input_shape") is not None:
        model.build(tuple(cfg["build_input_shape"]))
    else:
        model._maybe_rebuild()
    return model


def _is_history(x) -> bool:
    return (isinstance(x, list) and len(x) >= 3 and isinstance(x[0], str)
            and isinstance(x[1], int) and isinstance(x[2], int))


def _call_kwargs(layer, kwargs) -> dict:
    """Call arguments Keras recorded that the kiln layer does not take (``mask=None``)
    are dropped; a non-None one is dropped with a warning."""
    params = inspect.signature(layer.call).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    out = {}
    for k, v in kwargs.items():
        if k in params or k == "training":
            out[k] = v
        elif v is not None:
            warnings.warn(f"layer '{layer.name}': call argument {k}= is not supported by kiln "
                          f"and was ignored", stacklevel=4)
    return out


def functional_from_config(cfg, custom_objects=None, safe_mode=True):
    """Rebuild a Functional model: create the layers, then replay their calls (each
    layer's nodes in order, deferring a node until its inputs exist)."""
    from ..frontend.models import Functional
    layers, pending = {}, {}
    order = []
    for d in cfg.get("layers") or []:
        name = d.get("name") or (d.get("config") or {}).get("name")
        layer = deserialize(d, custom_objects, safe_mode)
        if layer.name != name:
            layer.name = name
        layers[name] = layer
        order.append(name)
        pending[name] = list(d.get("inbound_nodes") or [])
        if type(layer).__name__ == "InputLayer":
            pending[name] = []

    def tensor(name, node_index, tensor_index):
        layer = layers.get(name)
        if layer is None:
            raise SavingError(f"model config: a node refers to unknown layer '{name}'")
        if node_index >= len(layer._inbound_nodes):
            return None
        outs = layer._inbound_nodes[node_index].output_tensors
        if tensor_index >= len(outs):
            raise SavingError(f"model config: layer '{name}' has no output {tensor_index}")
        return outs[tensor_index]

    class _Missing(Exception):
        pass

    def convert(x):
        if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
            t = tensor(*x["config"]["keras_history"])
            if t is None:
                raise _Missing()
            return t
        if isinstance(x, list):
            return [convert(e) for e in x]
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        return x

    def call(layer, node):
        if isinstance(node, dict):   # Keras 3
            args = convert(node.get("args") or [])
            kwargs = _call_kwargs(layer, convert(node.get("kwargs") or {}))
            return layer(*args, **kwargs)
        # legacy: [[name, node_index, tensor_index, kwargs], ...]
        ts, kwargs = [], {}
        for entry in node:
            t = tensor(*entry[:3])
            if t is None:
                raise _Missing()
            ts.append(t)
            if len(entry) > 3 and entry[3]:
                kwargs.update(convert(entry[3]))
        return layer(ts[0] if len(ts) == 1 else ts, **_call_kwargs(layer, kwargs))

    progress = True
    while progress and any(pending.values()):
        progress = False
        for name in order:
            while pending[name]:
                try:
                    call(layers[name], pending[name][0])
                except _Missing:
                    break
                pending[name].pop(0)
                progress = True
    stuck = [n for n in order if pending[n]]
    if stuck:
        raise SavingError(f"model config: cannot connect layer(s) {stuck}: their inputs are "
                          f"never produced")

    def struct(s):
        if _is_history(s):
            t = tensor(*s[:3])
            if t is None:
                raise SavingError(f"model config: unknown model input/output {s}")
            return t
        if isinstance(s, dict):
            return {k: struct(v) for k, v in s.items()}
        return [struct(e) for e in s]
    inputs, outputs = struct(cfg["input_layers"]), struct(cfg["output_layers"])
    # Keras 2 wrote one-element lists for single inputs / outputs
    if isinstance(inputs, list) and len(inputs) == 1 and not _is_history(cfg["input_layers"]):
        inputs = inputs[0]
    if isinstance(outputs, list) and len(outputs) == 1:
        outputs = outputs[0]
    return Functional(inputs, outputs, name=cfg.get("name"),
                      trainable=cfg.get("trainable", True))
