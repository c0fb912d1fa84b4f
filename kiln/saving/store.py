"""The Keras 3 weights tree (``model.weights.h5`` in a ``.keras`` zip, and ``*.weights.h5``).

Keras walks the object graph, not layer names (``saving_lib._walk_saveable``): a model's
layers go under ``layers/<key>`` where the key is ``snake_case(ClassName)`` made unique
within the container (``dense``, ``dense_1``, ...); a layer's own variables go in
``<path>/vars/0..n-1`` (trainable, then non-trainable); sublayers are attributes walked
in sorted order (``cell`` of an RNN, ``forward_layer`` / ``backward_layer`` of a
Bidirectional, ``key_dense`` ... of MultiHeadAttention). Every ``vars`` group carries the
attribute ``name`` (the object's name, Keras >= 3.6).

``entries(model)`` lists ``(path, name, variables)`` for kiln's models in that walk;
``write_tree`` / ``read_tree`` move the arrays.
"""
from __future__ import annotations

import numpy as np

from .serialization import SavingError, snake_case


def _rnn_entries(layer, path):
    cell = getattr(type(layer), "CELL", "cell")
    return [(path, layer.name, []), (f"{path}/cell", cell, list(layer.weights))]


def layer_entries(layer, path) -> list:
    from ..frontend.layers.recurrent import _RNN
    from ..frontend.models import Model
    kind = type(layer).__name__
    if isinstance(layer, Model):
        return model_entries(layer, path)
    if isinstance(layer, _RNN):
        return _rnn_entries(layer, path)
    if kind == "Bidirectional":
        return ([(path, layer.name, [])]
                + _rnn_entries(layer.backward_layer, f"{path}/backward_layer")
                + _rnn_entries(layer.forward_layer, f"{path}/forward_layer"))
    if kind == "MultiHeadAttention":
        out = [(path, layer.name, []), (f"{path}/_dropout_layer", "dropout", []),
               (f"{path}/_softmax", "softmax", [])]
        for attr in ("key_dense", "output_dense", "query_dense", "value_dense"):
            sub = getattr(layer, attr, None)
            if sub is not None:
                out.append((f"{path}/{attr}", sub.name, list(sub.weights)))
        return out
    own = list(layer._trainable_variables) + list(layer._non_trainable_variables)
    if len(own) != len(layer.weights):
        raise SavingError(f"layer '{layer.name}' ({kind}) has nested sublayers kiln does not "
                          f"know how to lay out in the Keras weights file")
    return [(path, layer.name, own)]


def _layers_of(model) -> list:
    from ..frontend.models import Sequential
    layers = list(model.layers)
    if isinstance(model, Sequential):
        return layers            # Keras' Sequential.layers leaves out the InputLayer
    return layers


def _container(items, path) -> list:
    out, used = [], {}
    for layer in items:
        key = snake_case(type(layer).__name__)
        n = used.get(key, 0)
        used[key] = n + 1
        key = key if n == 0 else f"{key}_{n}"
        out += layer_entries(layer, f"{path}/{key}" if path else key)
    return out


def _subclassed_entries(model, prefix) -> list:
    """A subclassed model: public attributes holding layers (or lists of them), in
    sorted order, as Keras walks them (``enc/``, ``blocks/dense``, ``blocks/dense_1``)."""
    from ..frontend.layers.base import Layer
    out, seen = [], set()
    for attr in sorted(k for k in vars(model) if not k.startswith("_")):
        value = getattr(model, attr)
        if isinstance(value, Layer) and id(value) not in seen:
            seen.add(id(value))
            out += layer_entries(value, f"{prefix}{attr}")
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(v, Layer) for v in value):
            fresh = [v for v in value if id(v) not in seen]
            seen.update(id(v) for v in fresh)
            out += _container(fresh, f"{prefix}{attr}")
    missing = [l.name for l in model.layers if id(l) not in seen]
    if missing:
        raise SavingError(f"model '{model.name}': layers {missing} are not held by public "
                          f"attributes; kiln cannot lay them out as Keras does")
    return out


def model_entries(model, path="") -> list:
    from ..frontend.models import Functional, Sequential
    prefix = f"{path}/" if path else ""
    out = [(path, model.name, [])]
    if not isinstance(model, (Sequential, Functional)):
        return out + _subclassed_entries(model, prefix)
    return out + _container(_layers_of(model), f"{prefix}layers")


def _vars_path(path: str) -> str:
    return f"{path}/vars" if path else "vars"


def write_tree(h5, model, optimizer_vars=None) -> None:
    for path, name, variables in model_entries(model):
        g = h5.require_group(_vars_path(path))
        g.attrs["name"] = name
        for i, v in enumerate(variables):
            g.create_dataset(str(i), data=np.asarray(v.value))
    if optimizer_vars:
        name, arrays = optimizer_vars
        g = h5.require_group("optimizer/vars")
        g.attrs["name"] = name
        for i, a in enumerate(arrays):
            g.create_dataset(str(i), data=np.asarray(a))


def read_tree(h5, model, where: str, skip_mismatch: bool = False) -> None:
    """Assign every variable of ``model`` from the tree (all checked before any is set)."""
    root = h5
    if "layers" not in h5 and "_layer_checkpoint_dependencies" in h5:   # Keras 2.13
        root = {"layers": h5["_layer_checkpoint_dependencies"], **{k: h5[k] for k in h5}}
    assigns = []
    for path, name, variables in model_entries(model):
        if not variables:
            continue
        key = _vars_path(path)
        group = _get(root, key)
        if group is None:
            if skip_mismatch:
                continue
            raise SavingError(f"{where}: no weights for layer '{name}' (expected the group "
                              f"'/{key}' with {len(variables)} arrays)")
        keys = sorted((k for k in group.keys()), key=lambda k: int(k) if k.isdigit() else -1)
        if len(keys) != len(variables):
            if skip_mismatch:
                continue
            raise SavingError(f"{where}: layer '{name}' expects {len(variables)} weights "
                              f"({', '.join(v.name for v in variables)}), the file has "
                              f"{len(keys)} in '/{key}'")
        staged = []
        for i, v in enumerate(variables):
            a = np.asarray(group[str(i)][()])
            if a.shape != v.shape:
                if skip_mismatch:
                    staged = None
                    break
                raise SavingError(f"{where}: layer '{name}': weight '{v.name}' has shape "
                                  f"{v.shape} in the model but {a.shape} in the file "
                                  f"('/{key}/{i}')")
            staged.append((v, a))
        if staged:
            assigns += staged
    for v, a in assigns:
        v.assign(a.astype(v.dtype, copy=False))


def _get(root, key):
    node = root
    for part in key.split("/"):
        try:
            if part not in node:
                return None
            node = node[part]
        except (TypeError, KeyError):
            return None
    return node


def read_optimizer(h5):
    g = _get(h5, "optimizer/vars")
    if g is None:
        return None
    keys = sorted(g.keys(), key=lambda k: int(k) if k.isdigit() else -1)
    return [np.asarray(g[k][()]) for k in keys]
