"""Keras 3 ``.keras`` archives and ``.weights.h5`` files (shared/REFERENCE.md section 3.1).

A ``.keras`` file is a ZIP_STORED archive holding ``metadata.json``, ``config.json``
and ``model.weights.h5`` (in that order); the weights tree is kiln/saving/store.py.
Reading checks the archive before trusting it: the members must be there, each
uncompressed size is capped (zip bombs), and HDF5 errors become ``SavingError``\\ s
naming the file.
"""
from __future__ import annotations

import datetime
import io
import json
import zipfile

import h5py

from .._version import __version__ as _kiln_version
from . import store
from .atomic import atomic_write
from .serialization import SavingError, model_config_to_model, serialize
from .training_state import (apply_compile_config, compile_config, optimizer_arrays,
                             set_optimizer_arrays)

KERAS_VERSION = "3.15.1"          # the Keras format version kiln writes
MAX_MEMBER_BYTES = 4 << 30        # refuse members that would expand beyond this
_MEMBERS = ("metadata.json", "config.json", "model.weights.h5")


def model_json_config(model) -> dict:
    cfg = serialize(model)
    cc = compile_config(model)
    cfg["compile_config"] = cc if cc is not None else {}
    return cfg


def save_keras(model, path: str) -> None:
    cfg = model_json_config(model)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        store.write_tree(h5, model, optimizer_arrays(model))
    meta = {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "kiln_version": _kiln_version}
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("metadata.json", json.dumps(meta))
            z.writestr("config.json", json.dumps(cfg))
            z.writestr("model.weights.h5", buf.getvalue())


def _open_zip(path):
    try:
        z = zipfile.ZipFile(path, "r")
    except zipfile.BadZipFile:
        raise SavingError(f"{path}: not a valid .keras file (a zip archive was expected; the "
                          f"file is truncated, corrupt or of another format)") from None
    names = z.namelist()
    for m in ("config.json", "model.weights.h5"):
        if m not in names:
            alt = "model.weights.npz" if m == "model.weights.h5" else None
            if alt and alt in names:
                raise SavingError(f"{path}: weights stored as '{alt}' (weights_format='npz') "
                                  f"are not supported; re-save with the default h5 format")
            raise SavingError(f"{path}: not a valid .keras file: member '{m}' is missing "
                              f"(found {names})")
    for info in z.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise SavingError(f"{path}: member '{info.filename}' would expand to "
                              f"{info.file_size} bytes; refusing (zip bomb guard)")
    return z


def _read(z, path, member) -> bytes:
    try:
        return z.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise SavingError(f"{path}: cannot read '{member}' ({e}); the file is truncated or "
                          f"corrupt") from None


def read_keras_config(path) -> dict:
    with _open_zip(path) as z:
        try:
            return json.loads(_read(z, path, "config.json"))
        except json.JSONDecodeError as e:
            raise SavingError(f"{path}: config.json is not valid JSON ({e})") from None


def _h5_from_bytes(data: bytes, where: str):
    try:
        return h5py.File(io.BytesIO(data), "r")
    except OSError as e:
        raise SavingError(f"{where}: not a readable HDF5 file ({e})") from None


def load_keras(path, custom_objects=None, compile=True, safe_mode=True):
    with _open_zip(path) as z:
        try:
            cfg = json.loads(_read(z, path, "config.json"))
        except json.JSONDecodeError as e:
            raise SavingError(f"{path}: config.json is not valid JSON ({e})") from None
        weights = _read(z, path, "model.weights.h5")
    model = model_config_to_model(cfg, custom_objects, safe_mode, where=path)
    if not model.built:
        raise SavingError(f"{path}: the model's input shape is unknown (no Input, no "
                          f"build_config); kiln cannot place its weights")
    where = f"{path} (model.weights.h5)"
    with _h5_from_bytes(weights, where) as h5:
        store.read_tree(h5, model, where)
        opt = store.read_optimizer(h5)
    if compile and cfg.get("compile_config"):
        if apply_compile_config(model, cfg["compile_config"], path) and opt is not None:
            set_optimizer_arrays(model, opt, path)
    return model


def save_weights_h5(model, path: str) -> None:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        store.write_tree(h5, model, optimizer_arrays(model))
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def load_weights_h5(model, path: str, skip_mismatch: bool = False) -> None:
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise SavingError(f"{path}: not a readable HDF5 weights file ({e})") from None
    with h5:
        if "layers" not in h5 and "vars" not in h5 and "_layer_checkpoint_dependencies" not in h5:
            from . import legacy_h5
            if "layer_names" in h5.attrs or "model_weights" in h5 or any(
                    k.startswith("layer_names") for k in h5.attrs):
                legacy_h5.load_weights_group(model, h5, path, skip_mismatch=skip_mismatch)
                return
            raise SavingError(f"{path}: not a Keras weights file (no 'layers' / 'vars' "
                              f"groups, no legacy 'layer_names')")
        store.read_tree(h5, model, path, skip_mismatch=skip_mismatch)
        opt = store.read_optimizer(h5)
        if opt is not None and getattr(model, "compiled", False):
            set_optimizer_arrays(model, opt, path)
