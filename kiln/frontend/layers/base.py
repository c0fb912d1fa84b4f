"""The ``Layer`` base class.

A layer is a composition of IR ops: its ``call(inputs, training=False)`` receives IR
``Value``\\ s of the graph being built and returns Values, using ``kiln.ops`` (or the
IR builder directly). Everything shape-related is derived by *tracing* ``call``
through the IR builder, whose ops do the type inference; layers never compute
shapes themselves.

Calling a layer on
- an IR ``Value`` (inside ``with graph.building():``) builds the layer if needed (from
  the Value's shape) and appends its ops to that graph;
- a numpy array runs it eagerly (a one-layer graph run by the IR interpreter).
"""
from __future__ import annotations

import functools
import inspect
import math

import numpy as np

from ...ir.graph import Graph, Value
from ...ir.interpreter import interpret
from ...ir.opdef import OpTypeError
from ...ir.types import TensorType
from .. import initializers as _initializers
from ..naming import auto_name, ir_name, uniquify
from ..shapes import dtype_name, standardize_shape, to_dtype, to_ir_shape, to_keras_shape
from ..variables import Variable


def _call_takes_training(cls) -> bool:
    cache = cls.__dict__.get("_kiln_takes_training")
    if cache is None:
        params = inspect.signature(cls.call).parameters
        cache = "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        setattr(cls, "_kiln_takes_training", cache)
    return cache


def _wrap_build(fn):
    """Make a ``build`` mark the layer built (also when users call it directly), as Keras."""
    @functools.wraps(fn)
    def build(self, *args, **kwargs):
        result = fn(self, *args, **kwargs)
        self.built = True
        if args and self._build_input_shape is None and args[0] is not None:
            self._build_input_shape = standardize_shape(args[0], "input_shape")
        return result
    build._kiln_build_wrapper = True
    return build


class Layer:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("build")
        if fn is not None and not getattr(fn, "_kiln_build_wrapper", False):
            cls.build = _wrap_build(fn)

    def __init__(self, name=None, trainable=True, dtype=None, **kwargs):
        self.__dict__.setdefault("_layers", [])
        input_dim = kwargs.pop("input_dim", None)
        input_shape = kwargs.pop("input_shape", None)
        if input_dim is not None:
            input_shape = (input_dim,)
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                             f"{kwargs}")
        if name is None:
            name = auto_name(type(self).__name__)
        elif not isinstance(name, str) or "/" in name:
            raise ValueError(f"Argument `name` must be a string and cannot contain character `/`. "
                             f"Received: name={name!r} (of type {type(name)})")
        self.name = name
        self._dtype = to_dtype(dtype)
        self._input_shape_arg = (standardize_shape(input_shape, "input_shape")
                                 if input_shape is not None else None)
        self._trainable = bool(trainable)
        self._trainable_variables: list = []
        self._non_trainable_variables: list = []
        self.built = False
        self._build_input_shape = None
        self._last_output_shape = None

    # -- attribute tracking of nested layers -------------------------------------------
    def __setattr__(self, name, value):
        if not name.startswith("_"):
            layers = self.__dict__.setdefault("_layers", [])
            items = value if isinstance(value, (list, tuple)) else [value]
            for v in items:
                if isinstance(v, Layer) and v is not self and not any(v is l for l in layers):
                    layers.append(v)
        object.__setattr__(self, name, value)

    # -- dtype / trainable --------------------------------------------------------------
    @property
    def dtype(self) -> str:
        return dtype_name(self._dtype)

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        value = bool(value)
        self._trainable = value
        for v in self._trainable_variables:
            v.trainable = value
        for layer in self._layers:
            layer.trainable = value

    # -- weights ------------------------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True, name=None):
        """Create a weight of this layer (call it from ``build``)."""
        shape = standardize_shape(() if shape is None else shape, "add_weight shape")
        if any(d is None for d in shape):
            raise ValueError(f'Layer "{self.name}": weight {name!r} must have a fully defined '
                             f"shape, got {shape}")
        dt = to_dtype(dtype if dtype is not None else self._dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dt.is_float else "zeros"
        init = _initializers.get(initializer)
        if name is None:
            name = uniquify("variable")
        value = np.asarray(init(shape, dtype=dtype_name(dt)))
        if value.shape != shape:
            raise ValueError(f'Layer "{self.name}": initializer {init!r} of weight {name!r} '
                             f"returned shape {value.shape}, expected {shape}")
        v = Variable(value, name=name, path=f"{self.name}/{name}", trainable=trainable,
                     dtype=dtype_name(dt))
        (self._trainable_variables if trainable else self._non_trainable_variables).append(v)
        if not self._trainable:
            v.trainable = False
        return v

    @property
    def weights(self) -> list:
        out, seen = [], set()
        for w in self._trainable_variables + self._non_trainable_variables:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        for layer in self._layers:
            for w in layer.weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def trainable_weights(self) -> list:
        return [v for v in self.weights if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        return [v for v in self.weights if not v.trainable] if self.trainable else self.weights

    variables = weights
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    def get_weights(self) -> list:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights) -> None:
        """Set every weight from a list of arrays (in ``weights`` order). All counts and
        shapes are checked before anything is assigned."""
        params = self.weights
        weights = list(weights)
        if len(params) != len(weights):
            raise ValueError(f'You called `set_weights(weights)` on layer "{self.name}" with a '
                             f"weight list of length {len(weights)}, but the layer was expecting "
                             f"{len(params)} weights ({', '.join(v.path for v in params) or 'none'}).")
        arrays = []
        for i, (v, w) in enumerate(zip(params, weights)):
            a = np.asarray(w)
            if a.shape != v.shape:
                raise ValueError(f'Layer "{self.name}": weight #{i} "{v.path}" expects shape '
                                 f"{v.shape}, got an array of shape {a.shape}.")
            if a.dtype.kind not in "biuf":
                raise ValueError(f'Layer "{self.name}": weight #{i} "{v.path}" expects numeric '
                                 f"data ({v.dtype}), got dtype {a.dtype}.")
            arrays.append(a)
        for v, a in zip(params, arrays):
            v.assign(a)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', but the "
                             f"layer isn't built. You can build it manually via: "
                             f"`layer.build(input_shape)`.")
        return int(sum(math.prod(v.shape) for v in self.weights))

    # -- building and calling -------------------------------------------------------------
    def build(self, input_shape):
        """Create the layer's weights for inputs of ``input_shape`` (batch dim None).
        Override in layers with weights; the base does nothing."""

    def call(self, inputs, training=False):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs)")

    def _maybe_build(self, input_shape):
        if not self.built:
            shape = standardize_shape(input_shape, "input_shape")
            self.build(shape)
            self.built = True
            self._build_input_shape = shape

    def __call__(self, inputs, training=False, **kwargs):
        if isinstance(inputs, Value):
            return self._call_symbolic(inputs, training, kwargs)
        from .input_layer import KerasTensor
        if isinstance(inputs, KerasTensor):
            raise NotImplementedError(
                f"calling {type(self).__name__} on a symbolic Input (the functional API, "
                f"kiln.Model(inputs, outputs)) is not supported yet; use kiln.Sequential")
        return self._call_eager(inputs, training, kwargs)

    def _call_symbolic(self, x: Value, training=False, kwargs=None, record=True):
        self._maybe_build(to_keras_shape(x.shape))
        if _call_takes_training(type(self)):
            kwargs = dict(kwargs or {}, training=training)
        try:
            out = self.call(x, **(kwargs or {}))
        except OpTypeError as e:
            raise OpTypeError(f'{type(self).__name__} layer "{self.name}": {e}') from None
        if not isinstance(out, Value):
            raise TypeError(f'{type(self).__name__} layer "{self.name}": call() must return an '
                            f"IR Value, got {type(out).__name__}")
        if record:
            self._last_output_shape = to_keras_shape(out.shape)
        return out

    def _call_eager(self, x, training=False, kwargs=None):
        if training:
            raise NotImplementedError("calling layers with training=True comes with the "
                                      "[training] work")
        a = np.asarray(x)
        if a.dtype.kind == "f":
            a = a.astype(self._dtype.np, copy=False)
        g = Graph(ir_name(self.name))
        shape = (None,) + a.shape[1:] if a.ndim else ()
        v = g.add_input("x", TensorType(to_ir_shape(shape), to_dtype(a.dtype)))
        with g.building():
            out = self._call_symbolic(v, False, kwargs)
        g.set_outputs([out])
        return interpret(g, a)

    def compute_output_shape(self, input_shape) -> tuple:
        """The output shape for ``input_shape`` (batch dim None), found by tracing
        ``call`` through the IR builder (which builds the layer if needed)."""
        shape = standardize_shape(input_shape, "input_shape")
        self._maybe_build(shape)
        g = Graph("trace")
        x = g.add_input("x", TensorType(to_ir_shape(shape), self._dtype))
        with g.building():
            out = self._call_symbolic(x, False, record=False)
        return to_keras_shape(out.shape)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
