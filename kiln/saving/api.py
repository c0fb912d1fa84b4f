"""The saving API: files are told apart by their suffix (as Keras) and checked by their
first bytes, so a wrong extension gets a clear error rather than a parser crash."""
from __future__ import annotations

import json
import os

from . import keras_v3, legacy_h5
from .serialization import SavingError, model_config_to_model

_ZIP_MAGIC = b"PK\x03\x04"
_H5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _magic(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SavingError(f"{path}: is a directory (TensorFlow SavedModel directories are "
                          f"not supported; save the model as .keras or .h5)") from None


def _kind(path) -> str:
    p = os.fspath(path)
    head = _magic(p)
    if head.startswith(_ZIP_MAGIC):
        actual = "zip"
    elif head.startswith(_H5_MAGIC):
        actual = "h5"
    elif head[:1] in (b"{", b"[") or head[:1].isspace():
        actual = "json"
    else:
        actual = "unknown"
    if p.endswith(".keras"):
        expected = "zip"
    elif p.endswith((".h5", ".hdf5", ".keras.h5")):
        expected = "h5"
    elif p.endswith(".json"):
        expected = "json"
    else:
        expected = None
    if expected is not None and actual != expected:
        what = {"zip": "a zip archive (.keras)", "h5": "an HDF5 file",
                "json": "JSON", "unknown": "an unrecognized format"}
        if actual == "unknown" or os.path.getsize(p) < 8:
            raise SavingError(f"{p}: not a valid {os.path.splitext(p)[1]} file: expected "
                              f"{what[expected]}, the file is empty, truncated or corrupt")
        raise SavingError(f"{p}: the extension says {what[expected]} but the file is "
                          f"{what[actual]}; rename it or re-save it")
    if expected is None and actual == "unknown":
        raise SavingError(f"{p}: unknown model file format (expected .keras, .h5 or .json)")
    return actual


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a Keras model file: ``.keras`` (Keras 3), ``.h5`` / ``.hdf5`` (legacy, full
    model), or a ``.json`` architecture (``to_json``; weights left initialized)."""
    path = os.fspath(filepath)
    kind = _kind(path)
    if kind == "zip":
        return keras_v3.load_keras(path, custom_objects, compile, safe_mode)
    if kind == "h5":
        return legacy_h5.load_h5(path, custom_objects, compile, safe_mode)
    with open(path) as f:
        return model_from_json(f.read(), custom_objects, where=path)


def save_model(model, filepath, overwrite=True, **kwargs) -> None:
    """``model.save(filepath)``: ``.keras`` or legacy ``.h5`` / ``.hdf5``. The file is
    written beside the target and renamed into place."""
    path = os.fspath(filepath)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    unknown = set(kwargs) - {"save_format", "include_optimizer", "zipped"}
    if unknown:
        raise TypeError(f"save_model: unexpected arguments {sorted(unknown)}")
    if path.endswith(".keras"):
        keras_v3.save_keras(model, path)
    elif path.endswith((".h5", ".hdf5")):
        legacy_h5.save_h5(model, path)
    else:
        raise ValueError(f"Invalid filepath extension for saving: {path}. Use a `.keras` "
                         f"extension (or the legacy `.h5`).")


def save_weights(model, filepath, overwrite=True) -> None:
    path = os.fspath(filepath)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    if path.endswith(".weights.h5"):
        keras_v3.save_weights_h5(model, path)
    elif path.endswith((".h5", ".hdf5")):
        legacy_h5.save_weights_legacy(model, path)
    else:
        raise ValueError(f"The filename must end in `.weights.h5` (or the legacy `.h5`). "
                         f"Received: filepath={path}")


def load_weights(model, filepath, skip_mismatch=False, by_name=False) -> None:
    """Keras 3 ``.weights.h5`` (by object path), a legacy ``.h5`` (by position, or by
    layer name with ``by_name=True``), or the weights inside a ``.keras`` file."""
    path = os.fspath(filepath)
    kind = _kind(path)
    if kind == "zip":
        with keras_v3._open_zip(path) as z:
            data = keras_v3._read(z, path, "model.weights.h5")
        with keras_v3._h5_from_bytes(data, path) as h5:
            keras_v3.store.read_tree(h5, model, path, skip_mismatch=skip_mismatch)
        return
    if kind != "h5":
        raise SavingError(f"{path}: not a weights file (expected .weights.h5, .h5 or .keras)")
    if by_name or not path.endswith(".weights.h5"):
        f = legacy_h5._open(path)
        with f:
            if "layers" in f or "vars" in f:
                if by_name:
                    raise SavingError(f"{path}: by_name=True needs a legacy .h5 file; Keras 3 "
                                      f".weights.h5 files are matched by object path")
            else:
                legacy_h5.load_weights_group(model, f, path, by_name=by_name,
                                             skip_mismatch=skip_mismatch)
                return
    keras_v3.load_weights_h5(model, path, skip_mismatch=skip_mismatch)


# -- architecture only ---------------------------------------------------------------------
def to_json(model, **kwargs) -> str:
    return json.dumps(keras_v3.model_json_config(model), **kwargs)


def model_from_json(json_string, custom_objects=None, where="JSON model config"):
    try:
        cfg = json.loads(json_string)
    except json.JSONDecodeError as e:
        raise SavingError(f"{where}: not valid JSON ({e})") from None
    return model_config_to_model(cfg, custom_objects, where=where)


def to_yaml(model, **kwargs) -> str:
    import yaml
    return yaml.safe_dump(keras_v3.model_json_config(model), sort_keys=False, **kwargs)


def model_from_yaml(yaml_string, custom_objects=None):
    """The model a ``to_yaml`` string describes. Safe loading only: YAML tags that would
    construct Python objects are rejected (CVE-2021-37678 was ``yaml.unsafe_load``)."""
    import yaml
    try:
        cfg = yaml.safe_load(yaml_string)
    except yaml.YAMLError as e:
        raise SavingError(f"YAML model config: not valid (safe) YAML ({e})") from None
    return model_config_to_model(cfg, custom_objects, where="YAML model config")
