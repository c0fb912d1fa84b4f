"""Compile settings and optimizer state, to and from Keras' spellings.

Keras 3 keeps the optimizer's variables as ``[iterations, learning_rate, then for each
trainable variable (model order) its slots]`` (Adam: momentum, velocity), both in
``optimizer/vars`` of a ``.keras`` file and in ``optimizer_weights`` of a legacy ``.h5``.
kiln's optimizers keep the same slots by name (kiln/frontend/optimizers), so the state
maps one to one. Optimizer-wide extras (Nadam's ``u_product``) are not carried.
"""
from __future__ import annotations

import warnings

import numpy as np

from .serialization import to_json


def compile_config(model) -> dict | None:
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        return None
    opt = model.optimizer
    args = getattr(model, "_compile_args", {})
    ocfg = {k: to_json(v) for k, v in opt.get_config().items()}
    return {"optimizer": {"module": "keras.optimizers", "class_name": type(opt).__name__,
                          "config": ocfg, "registered_name": None},
            "loss": _plain(args.get("loss")), "loss_weights": _plain(args.get("loss_weights")),
            "metrics": _plain(args.get("metrics")),
            "weighted_metrics": _plain(args.get("weighted_metrics")),
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": True}


def _plain(v):
    """A loss / metric spec as JSON: names stay names; objects become their names."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(e) for e in v]
    if isinstance(v, dict):
        return {k: _plain(e) for k, e in v.items()}
    name = getattr(v, "name", None) or getattr(v, "__name__", None)
    return name if isinstance(name, str) else None


def _spec(v):
    """Keras-serialized loss / metric -> a name kiln accepts."""
    if isinstance(v, dict) and "class_name" in v:
        cfg = v.get("config") or {}
        return cfg.get("name") or v["class_name"] if isinstance(cfg, dict) else v["class_name"]
    if isinstance(v, list):
        return [_spec(e) for e in v]
    if isinstance(v, dict):
        return {k: _spec(e) for k, e in v.items()}
    return v


def apply_compile_config(model, cfg, where: str) -> bool:
    """``model.compile`` from a Keras ``compile_config`` / ``training_config``; a config
    kiln cannot honour is skipped with a warning (the model still predicts)."""
    from ..frontend import optimizers as _optimizers
    if not cfg:
        return False
    try:
        o = cfg.get("optimizer") or cfg.get("optimizer_config")
        opt = "rmsprop"
        if isinstance(o, dict):
            cls = _optimizers.get(o["class_name"].lower()).__class__
            ocfg = dict(o.get("config") or {})
            import inspect
            params = set()
            for klass in cls.__mro__:
                if "__init__" in klass.__dict__:
                    params |= set(inspect.signature(klass.__init__).parameters)
            ocfg = {k: v for k, v in ocfg.items() if k in params}
            if isinstance(ocfg.get("learning_rate"), dict):
                raise ValueError("learning-rate schedules in saved configs are not supported")
            opt = cls(**ocfg)
        elif isinstance(o, str):
            opt = o
        model.compile(optimizer=opt, loss=_spec(cfg.get("loss")),
                      loss_weights=cfg.get("loss_weights"), metrics=_spec(cfg.get("metrics")),
                      weighted_metrics=_spec(cfg.get("weighted_metrics")))
        return True
    except Exception as e:   # noqa: BLE001 -- a training config must not stop loading
        warnings.warn(f"{where}: the model was loaded uncompiled: its training config could "
                      f"not be applied ({type(e).__name__}: {e})", stacklevel=3)
        return False


def optimizer_arrays(model):
    """``(name, [arrays])`` in Keras' order, or None when there is no optimizer."""
    opt = getattr(model, "optimizer", None)
    if opt is None or not getattr(model, "compiled", False):
        return None
    if opt._live is not None:
        opt._live.pull()
    out = [np.array(opt.iterations, np.int64), np.array(opt.learning_rate, np.float32)]
    for var in model.trainable_weights:
        for slot in opt._slot_names:
            hit = opt._slot_store.get((id(var), slot))
            out.append(hit[1] if hit is not None and hit[0] is var
                       else np.full(var.shape, opt.slot_init(slot), np.float32))
    return opt.name, out


def set_optimizer_arrays(model, arrays, where: str) -> bool:
    opt = getattr(model, "optimizer", None)
    if opt is None or arrays is None:
        return False
    tw = model.trainable_weights
    want = 2 + len(tw) * len(opt._slot_names)
    if len(arrays) != want:
        warnings.warn(f"{where}: optimizer state not restored: the file has {len(arrays)} "
                      f"optimizer variables, {type(opt).__name__} on this model needs {want}",
                      stacklevel=3)
        return False
    i = 2
    staged = []
    for var in tw:
        for slot in opt._slot_names:
            a = np.asarray(arrays[i])
            if a.shape != var.shape:
                warnings.warn(f"{where}: optimizer state not restored: slot '{slot}' of "
                              f"'{var.path}' has shape {a.shape}, expected {var.shape}",
                              stacklevel=3)
                return False
            staged.append(((id(var), slot), (var, a.astype(np.float32))))
            i += 1
    opt._slot_store.update(dict(staged))
    opt.iterations = int(np.asarray(arrays[0]))
    return True
