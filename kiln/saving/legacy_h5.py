"""Legacy Keras HDF5 files: full models (``model.save("m.h5")``) and weights
(``save_weights("w.h5")``), as Keras 3's ``legacy_h5_format`` and tf.keras write them
(shared/REFERENCE.md section 3.3).

- root attributes ``model_config`` / ``training_config`` (JSON), ``keras_version``,
  ``backend``; group ``model_weights`` with ``layer_names`` (model order) and one group
  per layer with ``weight_names`` (the datasets' paths inside that group);
- ``optimizer_weights`` with its own ``weight_names``;
- attributes over 64 KiB are split into ``name0``, ``name1``, ... (read and written here);
- a weights-only file has the ``layer_names`` layout at the root.

Loading is by position (layers with weights, in order), or ``by_name``.
"""
from __future__ import annotations

import json
import re
import warnings

import h5py
import numpy as np

from .atomic import atomic_path
from .serialization import SavingError, model_config_to_model, serialize
from .training_state import (apply_compile_config, compile_config, optimizer_arrays,
                             set_optimizer_arrays)

HDF5_OBJECT_HEADER_LIMIT = 64512
KERAS_VERSION = "3.15.1"


# -- attributes -----------------------------------------------------------------------------
def _decode(x):
    return x.decode("utf8") if isinstance(x, bytes) else str(x)


def read_attr_list(group, name) -> list | None:
    """A list-of-strings attribute, chunked or not (None when absent)."""
    if name in group.attrs:
        raw = group.attrs[name]
        if isinstance(raw, (str, bytes)):   # Keras 3 writes some lists as their repr
            text = _decode(raw)
            found = re.findall(r"'([^']*)'", text)
            return found if found or text.strip() in ("[]", "") else [text]
        return [_decode(x) for x in np.asarray(raw).tolist()]
    if f"{name}0" in group.attrs:
        out, i = [], 0
        while f"{name}{i}" in group.attrs:
            out += [_decode(x) for x in np.asarray(group.attrs[f"{name}{i}"]).tolist()]
            i += 1
        return out
    return None


def write_attr_list(group, name, values) -> None:
    """Keras' ``save_attributes_to_hdf5_group``: chunk when the attribute is too big."""
    data = [v.encode("utf8") for v in values]
    arr = np.array(data, dtype=object) if data else np.array([], dtype=np.float64)
    if data:
        arr = np.array(data)   # fixed-length bytes, as Keras 2 wrote them
    n_chunks = 1
    while arr.nbytes / n_chunks > HDF5_OBJECT_HEADER_LIMIT and n_chunks < len(data):
        n_chunks += 1
    if n_chunks == 1:
        group.attrs[name] = arr
        return
    for i, chunk in enumerate(np.array_split(arr, n_chunks)):
        group.attrs[f"{name}{i}"] = chunk


def _json_attr(f, name, path):
    if name not in f.attrs:
        return None
    try:
        return json.loads(_decode(f.attrs[name]))
    except (json.JSONDecodeError, TypeError) as e:
        raise SavingError(f"{path}: attribute '{name}' is not valid JSON ({e})") from None


# -- saving ---------------------------------------------------------------------------------
def legacy_model_config(model) -> dict:
    """Keras 3's ``use_legacy_config`` form: no module / registered_name at the top
    level or on layer entries."""
    d = serialize(model)

    def strip(entry):
        out = {k: v for k, v in entry.items()
               if k not in ("module", "registered_name", "build_config", "compile_config")}
        if out.get("class_name") in ("Sequential", "Functional") and "layers" in out["config"]:
            out["config"] = {**out["config"],
                             "layers": [strip(l) for l in out["config"]["layers"]]}
        return out
    cfg = dict(d["config"])
    cfg["layers"] = [strip(l) for l in cfg.get("layers", [])]
    return {"class_name": d["class_name"], "config": cfg}


def _weight_layers(model) -> list:
    return list(model.layers)


def write_weights_group(group, model) -> None:
    layers = _weight_layers(model)
    write_attr_list(group, "layer_names", [l.name for l in layers])
    group.attrs["backend"] = "kiln"
    group.attrs["keras_version"] = KERAS_VERSION
    for layer in sorted(layers, key=lambda l: l.name):
        g = group.create_group(layer.name)
        weights = layer.trainable_weights + layer.non_trainable_weights
        names = [v.path for v in weights]
        write_attr_list(g, "weight_names", names)
        for name, v in zip(names, weights):
            g.create_dataset(name, data=np.asarray(v.value))
    g = group.create_group("top_level_model_weights")
    write_attr_list(g, "weight_names", [])


def save_h5(model, path) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["keras_version"] = KERAS_VERSION
            f.attrs["backend"] = "kiln"
            f.attrs["model_config"] = json.dumps(legacy_model_config(model))
            write_weights_group(f.create_group("model_weights"), model)
            cc = compile_config(model)
            if cc is not None:
                tc = {k: v for k, v in cc.items() if k != "optimizer"}
                tc["optimizer_config"] = {"class_name": cc["optimizer"]["class_name"],
                                          "config": cc["optimizer"]["config"]}
                f.attrs["training_config"] = json.dumps(tc)
                opt = optimizer_arrays(model)
                if opt is not None:
                    _write_optimizer(f, model, *opt)


def _write_optimizer(f, model, name, arrays):
    g = f.create_group("optimizer_weights")
    opt = model.optimizer
    names = [f"{name}/iteration", f"{name}/learning_rate"]
    for var in model.trainable_weights:
        for slot in opt._slot_names:
            names.append(f"{name}/{var.path.replace('/', '_')}_{slot}")
    write_attr_list(g, "weight_names", names)
    for n, a in zip(names, arrays):
        g.create_dataset(n, data=np.asarray(a))


def save_weights_legacy(model, path) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            write_weights_group(f, model)


# -- loading --------------------------------------------------------------------------------
def _open(path):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise SavingError(f"{path}: not a readable HDF5 file ({e}); the file is truncated, "
                          f"corrupt or of another format") from None


def _layer_values(group, lname, path) -> list:
    g = group[lname] if lname in group else None
    if g is None:
        raise SavingError(f"{path}: layer group '{lname}' is listed in layer_names but missing")
    names = read_attr_list(g, "weight_names") or []
    out = []
    for n in names:
        if n not in g:
            raise SavingError(f"{path}: layer '{lname}': weight '{n}' is listed in "
                              f"weight_names but missing from the file")
        out.append((n, np.asarray(g[n][()])))
    return out


def load_weights_group(model, group, path, by_name=False, skip_mismatch=False) -> None:
    """Keras' ``load_weights_from_hdf5_group`` (+ ``_by_name``): all checked, then set."""
    if "model_weights" in group and "layer_names" not in group.attrs:
        group = group["model_weights"]
    names = read_attr_list(group, "layer_names")
    if names is None:
        raise SavingError(f"{path}: not a Keras HDF5 weights file (no 'layer_names' attribute)")
    file_layers = [(n, _layer_values(group, n, path)) for n in names]
    layers = [l for l in model.layers if l.weights]
    staged = []

    def stage(layer, values, lname):
        weights = layer.trainable_weights + layer.non_trainable_weights
        if len(values) != len(weights):
            msg = (f"{path}: layer '{layer.name}' ({type(layer).__name__}) expects "
                   f"{len(weights)} weights, the file's layer '{lname}' has {len(values)}")
            if skip_mismatch:
                warnings.warn(msg + "; skipped", stacklevel=4)
                return
            raise SavingError(msg)
        pairs = []
        for v, (wname, a) in zip(weights, values):
            if a.shape != v.shape:
                msg = (f"{path}: layer '{layer.name}': weight '{v.name}' has shape {v.shape} "
                       f"in the model but {a.shape} in the file ('{wname}')")
                if skip_mismatch:
                    warnings.warn(msg + "; skipped", stacklevel=4)
                    return
                raise SavingError(msg)
            pairs.append((v, a))
        staged.extend(pairs)

    if by_name:
        index = dict(file_layers)
        for layer in layers:
            if layer.name in index:
                stage(layer, index[layer.name], layer.name)
    else:
        file_layers = [(n, vals) for n, vals in file_layers if vals]
        if len(file_layers) != len(layers):
            raise SavingError(f"{path}: the file holds weights for {len(file_layers)} layers "
                              f"({[n for n, _ in file_layers]}), the model has {len(layers)} "
                              f"layers with weights ({[l.name for l in layers]})")
        for layer, (lname, values) in zip(layers, file_layers):
            stage(layer, values, lname)
    for v, a in staged:
        v.assign(a.astype(v.dtype, copy=False))


def read_model_config(path) -> dict:
    with _open(path) as f:
        cfg = _json_attr(f, "model_config", path)
    if cfg is None:
        raise SavingError(f"{path}: no 'model_config' attribute: this is a weights-only "
                          f"file; build the model and call model.load_weights() instead")
    return cfg


def _optimizer_values(f):
    if "optimizer_weights" not in f:
        return None
    g = f["optimizer_weights"]
    names = read_attr_list(g, "weight_names") or []
    if any(n.endswith(":0") for n in names):   # Keras 2: slots grouped by kind, other names
        return "keras2"
    try:
        return [np.asarray(g[n][()]) for n in names]
    except KeyError:
        return None


def load_h5(path, custom_objects=None, compile=True, safe_mode=True):
    with _open(path) as f:
        cfg = _json_attr(f, "model_config", path)
        if cfg is None:
            raise SavingError(f"{path}: no 'model_config' attribute: this is a weights-only "
                              f"file; build the model and call model.load_weights() instead")
        model = model_config_to_model(cfg, custom_objects, safe_mode, where=path)
        if "model_weights" not in f:
            raise SavingError(f"{path}: no 'model_weights' group")
        load_weights_group(model, f["model_weights"], path)
        tc = _json_attr(f, "training_config", path)
        opt = _optimizer_values(f)
    if compile and tc:
        if apply_compile_config(model, tc, path) and opt is not None:
            if opt == "keras2":
                warnings.warn(f"{path}: Keras 2 optimizer state is not restored (the model is "
                              f"compiled with fresh optimizer slots)", stacklevel=2)
            else:
                set_optimizer_arrays(model, opt, path)
    return model
