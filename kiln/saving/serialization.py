"""Layer and model configs in Keras 3's schema, both ways.

``serialize(obj)`` gives Keras' four-key form ``{"module", "class_name", "config",
"registered_name"}`` (plus ``build_config`` for built layers); ``deserialize(d)`` builds
the kiln object back, from kiln- or Keras-written configs (Keras 3 and the Keras 2 /
tf.keras legacy spellings).

A layer's ``config`` lists Keras' keys in Keras' order (kiln/saving/keras_schema.py).
Each value comes from, in this order: a per-key getter below, the layer's attribute of
that name (tuples become lists, initializers and activations their serialized form),
the argument the layer was constructed with (``_init_args``), Keras' default.

Loading never runs code from the file: classes are looked up in kiln's layer table
or in the caller's ``custom_objects`` / ``register_keras_serializable`` registry;
``Lambda`` and unknown classes are refused. One error lists every class kiln lacks.
"""
from __future__ import annotations

import inspect
import re
import warnings

import numpy as np

from ..frontend import activations as _activations
from ..frontend import initializers as _initializers
from ..frontend import layers as _layers
from .keras_schema import LAYER_KEYS


class SavingError(ValueError):
    """A model file or config kiln cannot read (the message names file / layer / weight)."""


# -- class tables ---------------------------------------------------------------------------
def _layer_classes() -> dict:
    out = {}
    for name in _layers.__all__:
        obj = getattr(_layers, name)
        if isinstance(obj, type) and issubclass(obj, _layers.Layer):
            out.setdefault(obj.__name__, obj)
            out.setdefault(name, obj)
    return out


_CUSTOM: dict = {}


def register_keras_serializable(package="Custom", name=None):
    """Decorator registering a custom layer class as ``"package>Name"`` (as Keras)."""
    def deco(cls):
        key = f"{package}>{name or cls.__name__}"
        _CUSTOM[key] = cls
        cls._registered_name = key
        return cls
    return deco


def _model_classes() -> dict:
    from ..frontend.models import Functional, Model, Sequential
    return {"Sequential": Sequential, "Functional": Functional, "Model": Functional,
            "_Model": Model}


def snake_case(name: str) -> str:
    """Keras' ``naming.to_snake_case``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# -- values -> JSON -------------------------------------------------------------------------
_VS_FAMILY = ("GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
              "LecunNormal", "VarianceScaling")


def serialize_initializer(init) -> dict:
    name = type(init).__name__
    cfg = {k: to_json(v) for k, v in init.get_config().items()}
    if name in _VS_FAMILY:
        cfg.setdefault("input_axes", None)
        cfg.setdefault("output_axes", None)
    return {"module": "keras.initializers", "class_name": name, "config": cfg,
            "registered_name": None}


def dtype_policy(name: str) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name},
            "registered_name": None}


def to_json(v):
    """A config value as JSON data (Keras' spelling)."""
    if isinstance(v, _initializers.Initializer):
        return serialize_initializer(v)
    if isinstance(v, (tuple, list)):
        return [to_json(e) for e in v]
    if isinstance(v, dict):
        return {k: to_json(e) for k, e in v.items()}
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, _layers.Layer):
        return serialize(v)
    if callable(v):
        return _activations.serialize(v)
    return v


# -- getters for keys whose attribute differs from the config value --------------------
def _arg(key, default=None):
    def get(layer):
        return to_json(getattr(layer, "_init_args", {}).get(key, default))
    return get


def _axis_list(layer):
    a = getattr(layer, "_init_args", {}).get("axis", -1)
    return [a] if isinstance(a, int) else to_json(a)


def _wrapped(bidi, layer) -> dict:
    d = serialize(layer)
    d["config"]["zero_output_for_mask"] = bool(layer.return_sequences)   # as Keras sets it
    return d


_GETTERS = {
    ("BatchNormalization", "axis"): _arg("axis", -1),
    ("LayerNormalization", "axis"): _arg("axis", -1),
    ("Normalization", "axis"): _axis_list,
    ("Normalization", "mean"): _arg("mean"),
    ("Normalization", "variance"): _arg("variance"),
    ("MultiHeadAttention", "output_shape"): _arg("output_shape"),
    ("MultiHeadAttention", "attention_axes"): _arg("attention_axes"),
    ("Bidirectional", "layer"): lambda l: _wrapped(l, l.forward_layer),
    ("Bidirectional", "backward_layer"): lambda l: _wrapped(l, l.backward_layer),
    ("Dense", "activation"): lambda l: _activations.serialize(l.activation),
    ("Embedding", "mask_zero"): lambda l: bool(l.mask_zero),
}
# attributes of the base Layer that are not config values of that name
_NOT_CONFIG_ATTRS = {"weights", "input_spec", "built", "variables", "output", "input"}


def layer_config(layer) -> dict:
    """``layer.get_config()``: Keras' keys in Keras' order."""
    from ..frontend.models import Functional, Sequential
    from .model_config import functional_config, sequential_config
    if isinstance(layer, Sequential):
        return sequential_config(layer)
    if isinstance(layer, Functional):
        return functional_config(layer)
    cls = type(layer).__name__
    keys = LAYER_KEYS.get(cls)
    base = {"name": layer.name, "trainable": layer.trainable, "dtype": dtype_policy(layer.dtype)}
    if cls == "InputLayer":
        return {"batch_shape": list(layer.batch_shape), "dtype": layer.dtype, "sparse": False,
                "ragged": False, "name": layer.name, "optional": False}
    if keys is None:   # a user layer: base keys plus its constructor arguments
        args = {k: to_json(v) for k, v in getattr(layer, "_init_args", {}).items()
                if k not in ("name", "trainable", "dtype", "input_shape", "input_dim")}
        return {**base, **args}
    init_args = getattr(layer, "_init_args", {})
    cfg = {}
    for key, default in keys:
        if key in base:
            cfg[key] = base[key]
        elif (cls, key) in _GETTERS:
            cfg[key] = _GETTERS[(cls, key)](layer)
        elif key not in _NOT_CONFIG_ATTRS and hasattr(layer, key) \
                and not inspect.ismethod(getattr(layer, key)):
            cfg[key] = to_json(getattr(layer, key))
        elif key in init_args:
            cfg[key] = to_json(init_args[key])
        else:
            cfg[key] = default
    return cfg


# Keras layers that write no ``build_config`` (their ``build`` is Keras' default)
_NO_BUILD_CONFIG = {"InputLayer", "Activation", "Dropout", "Reshape", "MaxPooling1D",
                    "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
                    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
                    "GlobalMaxPooling2D", "ReLU", "LeakyReLU", "ELU", "Softmax"}


def _has_build(layer) -> bool:
    name = type(layer).__name__
    if name in LAYER_KEYS:
        return name not in _NO_BUILD_CONFIG
    return type(layer).build is not _layers.Layer.build


def serialize(obj, build=True) -> dict:
    """Keras' ``serialize_keras_object`` for a kiln layer or model."""
    from ..frontend.models import Functional, Sequential
    from .model_config import functional_config, sequential_config
    cls = type(obj)
    reg = getattr(cls, "_registered_name", None)
    if isinstance(obj, Sequential):
        module, name, cfg = "keras", "Sequential", sequential_config(obj)
    elif isinstance(obj, Functional) and (cls is Functional or reg is None):
        module, name, cfg = "keras.src.models.functional", "Functional", functional_config(obj)
    else:
        name = cls.__name__
        known = _layer_classes().get(name) is cls
        if not known and reg is None:
            reg = f"Custom>{name}"
        module = "keras.layers" if known else None
        cfg = obj.get_config()
        if known:
            reg = None
    if name == "Functional":
        reg = "Functional"
    out = {"module": module, "class_name": name, "config": cfg, "registered_name": reg}
    shapes = obj.__dict__.get("_build_shapes_dict")
    from ..frontend.models import Model
    if isinstance(obj, Model) and name in ("Sequential", "Functional"):
        from .training_state import compile_config
        out["compile_config"] = compile_config(obj) or {}
    if name == "Functional":
        out["build_config"] = {"input_shape": None}
    elif build and obj.built and shapes:
        out["build_config"] = {"shapes_dict": {k: to_json(v) for k, v in shapes.items()
                                               if v is not None}}
    elif build and obj.built and _has_build(obj) and obj._build_input_shape is not None \
            and name != "InputLayer":
        out["build_config"] = {"input_shape": to_json(obj._build_input_shape)}
    return out


# -- JSON -> objects ------------------------------------------------------------------------
def _is_lambda(name: str) -> bool:
    return name in ("Lambda", "TFOpLambda", "SlicingOpLambda")


def _find_class(class_name, registered_name, custom_objects, where, safe_mode):
    custom = dict(custom_objects or {})
    for key in (registered_name, class_name):
        if key and key in custom:
            return custom[key]
        if key and key in _CUSTOM:
            return _CUSTOM[key]
    if _is_lambda(class_name):
        hint = ("" if safe_mode else " (safe_mode=False only builds registered custom objects; "
                "kiln never deserializes Python code)")
        raise SavingError(f"{where}: layer class '{class_name}' runs Python code stored in the "
                          f"file; kiln refuses to load it{hint}. Rewrite it as a registered "
                          f"custom layer (kiln.saving.register_keras_serializable).")
    cls = _model_classes().get(class_name) or _layer_classes().get(class_name)
    if cls is None:
        raise SavingError(f"{where}: unknown layer class '{class_name}' (kiln cannot build "
                          f"it; pass custom_objects={{'{class_name}': cls}} for a custom layer)")
    return cls


def missing_classes(config, custom_objects=None) -> list:
    """Every (layer name, class) in a model config that kiln cannot build."""
    out = []
    known = {**_layer_classes(), **_model_classes(), **_CUSTOM, **dict(custom_objects or {})}

    def walk(d):
        if not isinstance(d, dict):
            return
        cn = d.get("class_name")
        cfg = d.get("config")
        if cn in ("Sequential", "Functional", "Model") and isinstance(cfg, dict):
            for l in (cfg.get("layers") or []):
                walk(l)
            return
        if cn and cn not in known and d.get("registered_name") not in known:
            name = (cfg or {}).get("name") if isinstance(cfg, dict) else None
            out.append((d.get("name") or name, cn))
        elif cn == "Bidirectional" and isinstance(cfg, dict):
            walk(cfg.get("layer"))
    walk(config)
    return out


def check_buildable(config, custom_objects=None, where="model config"):
    bad = missing_classes(config, custom_objects)
    if bad:
        lam = [b for b in bad if _is_lambda(b[1])]
        listing = ", ".join(f"'{n}' ({c})" for n, c in bad)
        extra = (" Lambda layers run Python code stored in the file and are never loaded."
                 if lam else "")
        raise SavingError(f"{where}: kiln cannot build {len(bad)} layer(s): {listing}.{extra} "
                          f"Pass custom_objects for custom layers.")


def deserialize_initializer(d):
    if d is None or isinstance(d, (str, _initializers.Initializer)):
        return d if d is not None else None
    name = d.get("class_name")
    cfg = dict(d.get("config") or {})
    cfg = {k: v for k, v in cfg.items() if not (k in ("input_axes", "output_axes") and v is None)}
    if name == "VarianceScaling" and cfg.get("distribution") == "normal":
        cfg["distribution"] = "truncated_normal"   # Keras <= 2.2 spelling
    cls = _initializers._CLASSES.get(name) or _initializers._BY_NAME.get(snake_case(name or ""))
    if cls is None:
        raise SavingError(f"unknown initializer '{name}'")
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in cfg.items() if k in params})


def _decode_value(key, v):
    if isinstance(v, dict) and "class_name" in v:
        cn = v["class_name"]
        if cn in ("DTypePolicy", "Policy", "FloatDTypePolicy"):
            name = (v.get("config") or {}).get("name", "float32")
            if name.startswith("mixed_"):
                raise SavingError(f"dtype policy '{name}' is not supported by kiln")
            return name
        if key.endswith("initializer"):
            return deserialize_initializer(v)
        if key == "activation" or key.endswith("_activation"):
            return snake_case(cn)
    return v


def _init_params(cls):
    """Argument names a class's constructor accepts (following ``**kwargs`` up the MRO)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        init = inspect.unwrap(init)
        params = inspect.signature(init).parameters
        names.update(k for k, p in params.items()
                     if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and k != "self")
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
        if klass is _layers.Layer:
            names.update({"input_shape", "input_dim"})
            break
    return names


_RENAMES = {("LeakyReLU", "alpha"): "negative_slope", ("InputLayer", "batch_input_shape"):
            "batch_shape"}
_BENIGN_DEFAULTS = (None, False, 0, 0.0, "", [], {}, 1)


def layer_from_config(cls, config, custom_objects=None):
    """``cls.from_config(config)``: unknown keyword arguments are dropped (with a warning
    unless they hold Keras' default)."""
    from ..frontend.models import Functional, Sequential
    from .model_config import functional_from_config, sequential_from_config
    if issubclass(cls, Sequential):
        return sequential_from_config(config, custom_objects)
    if issubclass(cls, Functional):
        return functional_from_config(config, custom_objects)
    name = cls.__name__
    cfg = {}
    for k, v in dict(config).items():
        k = _RENAMES.get((name, k), k)
        cfg[k] = _decode_value(k, v)
    if name == "InputLayer":
        cfg = {k: v for k, v in cfg.items() if k in ("batch_shape", "dtype", "name", "shape",
                                                      "batch_size")}
        if cfg.get("batch_shape") is not None:
            cfg["batch_shape"] = tuple(cfg["batch_shape"])
        return cls(**cfg)
    if name == "Bidirectional":
        def unbuilt(d):   # built by the wrapper (which prefixes the weight paths)
            return deserialize({k: v for k, v in d.items() if k != "build_config"},
                               custom_objects)
        fwd = unbuilt(config["layer"])
        bwd = config.get("backward_layer")
        bwd = unbuilt(bwd) if bwd is not None else None
        cfg.pop("layer")
        cfg.pop("backward_layer", None)
        keep = {k: v for k, v in cfg.items() if k in ("name", "trainable", "dtype", "merge_mode")}
        out = cls(fwd, backward_layer=bwd, **keep)
        out.forward_layer.name = fwd.name   # Keras keeps the saved sublayer names
        return out
    accepted = _init_params(cls)
    defaults = dict(LAYER_KEYS.get(name, []))
    kwargs = {}
    for k, v in cfg.items():
        if k in accepted:
            kwargs[k] = v
        elif not (v in _BENIGN_DEFAULTS or (k in defaults and defaults[k] == v)
                  or k in ("zero_output_for_mask", "ragged", "sparse", "build_config")):
            warnings.warn(f"{name} layer '{cfg.get('name')}': ignoring argument {k}={v!r} "
                          f"(not supported by kiln)", stacklevel=3)
    return cls(**kwargs)


def _resolve(d):
    """Keras 3 or legacy entry -> (class_name, registered_name, config)."""
    if not isinstance(d, dict) or "class_name" not in d:
        raise SavingError(f"malformed layer entry (expected an object with 'class_name'): "
                          f"{str(d)[:200]}")
    return d["class_name"], d.get("registered_name"), d.get("config") or {}


def deserialize(d, custom_objects=None, safe_mode=True):
    """Keras' ``deserialize_keras_object`` for layers and models."""
    class_name, reg, cfg = _resolve(d)
    where = f"layer '{cfg.get('name', d.get('name', '?'))}'" if isinstance(cfg, dict) else "?"
    cls = _find_class(class_name, reg, custom_objects, where, safe_mode)
    from ..frontend.models import Functional, Sequential
    from .model_config import functional_from_config, sequential_from_config
    if cls is Sequential:
        return sequential_from_config(cfg, custom_objects, safe_mode)
    if cls is Functional:
        return functional_from_config(cfg, custom_objects, safe_mode)
    try:
        if hasattr(cls, "from_config") and cls.from_config.__func__ is not \
                _layers.Layer.from_config.__func__:
            layer = cls.from_config(cfg)
        else:
            layer = layer_from_config(cls, cfg, custom_objects)
    except SavingError:
        raise
    except (ValueError, TypeError, NotImplementedError) as e:
        raise SavingError(f"{where} ({class_name}): kiln cannot build it: {e}") from None
    bc = d.get("build_config")
    if bc and not layer.built:
        try:
            if bc.get("shapes_dict"):
                shapes = {k: tuple(v) for k, v in bc["shapes_dict"].items()}
                layer.build(**shapes)
                layer._build_shapes_dict = shapes
            elif bc.get("input_shape") is not None:
                _build(layer, bc["input_shape"])
        except Exception:   # noqa: BLE001 -- built again on the first call
            pass
    return layer


def _build(layer, shape):
    from ..frontend.layers.base import standardize_shapes
    params = [p for p in inspect.signature(layer.build).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) > 1 and isinstance(shape, dict):
        layer.build(**{k: tuple(v) for k, v in shape.items()})
    else:
        layer.build(standardize_shapes(shape))


def model_config_to_model(config, custom_objects=None, safe_mode=True, where="model config"):
    """A top-level serialized model (``config.json``, ``model_config``, ``to_json``)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise SavingError(f"{where}: not a Keras model config (no 'class_name')")
    check_buildable(config, custom_objects, where)
    try:
        return deserialize(config, custom_objects, safe_mode)
    except SavingError:
        raise
    except (KeyError, TypeError, IndexError) as e:
        raise SavingError(f"{where}: malformed model config ({type(e).__name__}: {e})") from None
