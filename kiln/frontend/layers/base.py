"""The ``Layer`` base class.

A layer is a composition of IR ops: its ``call(inputs, training=False)`` receives IR
``Value``\\ s of the graph being built and returns Values, using ``kiln.ops`` (or the
IR builder directly). Everything shape-related is derived by *tracing* ``call``
through the IR builder, whose ops do the type inference; layers never compute
shapes themselves.

Calling a layer on
- an IR ``Value`` (inside ``with graph.building():``) builds the layer if needed (from
  the Value's shape) and appends its ops to that graph;
- a symbolic ``KerasTensor`` (``kiln.Input``, the functional API) traces ``call`` once
  to build the layer and infer output shapes, records a ``Node`` in the layer's
  ``_inbound_nodes`` and returns KerasTensors (kiln/frontend/layers/node.py);
- a numpy array runs it eagerly (a one-layer graph run by the IR interpreter).

Inputs may be structures (lists, tuples, dicts) of these; extra positional and
keyword arguments are passed on to ``call``. ``training`` (default None) is passed to
``call`` when it accepts it; None means "as the enclosing call" (a training context
that calls of models and layers set for the layers they call), else False.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import math

import numpy as np

from ...ir.graph import Graph, Value
from ...ir.interpreter import interpret
from ...ir.opdef import OpTypeError
from ...ir.types import TensorType
from .. import initializers as _initializers
from .. import tree
from ..naming import auto_name, ir_name, uniquify
from ..shapes import dtype_name, standardize_shape, to_dtype, to_ir_shape, to_keras_shape
from ..variables import Variable
from .input_spec import assert_input_compatibility

# the `training` flag of the innermost layer call being traced (None outside any call)
_TRAINING: contextvars.ContextVar = contextvars.ContextVar("kiln_training", default=None)


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
            self._build_input_shape = standardize_shapes(args[0])
        return result
    build._kiln_build_wrapper = True
    return build


def _wrap_init(fn):
    """Record the arguments of the outermost ``__init__`` call (``_init_args``): what
    ``get_config`` falls back to for arguments a layer does not keep as attributes."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def __init__(self, *args, **kwargs):
        if "_init_args" not in self.__dict__:
            try:
                params = dict(sig.bind(self, *args, **kwargs).arguments)
                params.pop(next(iter(params)))          # self
                for k, p in sig.parameters.items():
                    if p.kind is p.VAR_KEYWORD:
                        params.update(params.pop(k, {}))
                    elif p.kind is p.VAR_POSITIONAL:
                        params.pop(k, None)
                self.__dict__["_init_args"] = params
            except TypeError:
                pass
        fn(self, *args, **kwargs)
    __init__._kiln_init_wrapper = True
    return __init__


def _is_shape(x) -> bool:
    return isinstance(x, (tuple, list)) and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in x)


def standardize_shapes(shapes):
    """A shape, or a structure (list / dict) of shapes, standardized."""
    if isinstance(shapes, dict):
        return {k: standardize_shapes(v) for k, v in shapes.items()}
    if isinstance(shapes, (list, tuple)) and shapes and not _is_shape(shapes):
        return [standardize_shapes(s) for s in shapes]
    return standardize_shape(shapes, "input_shape")


def _shape_of(x):
    from .node import KerasTensor
    if isinstance(x, Value):
        return to_keras_shape(x.shape)
    if isinstance(x, KerasTensor):
        return tuple(x.shape)
    return tuple(np.shape(x))


def _is_tensor(x) -> bool:
    from .node import KerasTensor
    return isinstance(x, (Value, KerasTensor))


class _Shape:
    """A shape as a leaf of a structure (tuples are otherwise containers)."""

    def __init__(self, shape):
        self.shape = shape


def _shape_structure(shapes):
    if isinstance(shapes, dict):
        return {k: _shape_structure(v) for k, v in shapes.items()}
    if isinstance(shapes, list):
        return [_shape_structure(s) for s in shapes]
    return _Shape(shapes)


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Layer:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("build")
        if fn is not None and not getattr(fn, "_kiln_build_wrapper", False):
            cls.build = _wrap_build(fn)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_kiln_init_wrapper", False):
            cls.__init__ = _wrap_init(init)

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
        self._inbound_nodes: list = []
        self.input_spec = None

    def get_config(self) -> dict:
        """The layer's constructor arguments in Keras' config schema (kiln/saving)."""
        from ...saving.serialization import layer_config
        return layer_config(self)

    @classmethod
    def from_config(cls, config):
        """A new layer from ``get_config()`` output (Keras or kiln written)."""
        from ...saving.serialization import layer_from_config
        return layer_from_config(cls, config)

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
        """Build from the shape(s) of the first call argument (a shape, or a list /
        dict of shapes for layers called on several tensors)."""
        if not self.built:
            shape = standardize_shapes(input_shape)
            self.build(shape)
            self.built = True
            self._build_input_shape = shape

    def _build_from_call_args(self, args, kwargs):
        """Build before the first call. A ``build(self, query_shape, value_shape)``
        whose parameters are call argument names + ``_shape`` gets those arguments'
        shapes (as Keras); any other ``build`` gets the first argument's shape(s)."""
        if self.built:
            return
        params = [p for p in inspect.signature(self.build).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params]
        if len(names) > 1 and all(n.endswith("_shape") for n in names):
            call_params = [p.name for p in inspect.signature(self.call).parameters.values()]
            bound = dict(zip(call_params, args))
            bound.update({k: v for k, v in kwargs.items() if k in call_params})
            shapes = {n: (tree.map_structure(_shape_of, bound[n[:-6]])
                          if bound.get(n[:-6]) is not None else None) for n in names}
            self.build(**shapes)
            self.built = True
            self._build_input_shape = shapes.get(names[0])
            self._build_shapes_dict = shapes
        else:
            self._maybe_build(tree.map_structure(_shape_of, args[0]))

    def __call__(self, *args, **kwargs):
        if not args:
            if "inputs" not in kwargs:
                raise TypeError(f'Layer "{self.name}": call it on its inputs, e.g. layer(x)')
            args = (kwargs.pop("inputs"),)
        training = kwargs.pop("training", None)
        leaves = tree.flatten([list(args), kwargs])
        from .node import KerasTensor
        if any(isinstance(t, KerasTensor) for t in leaves):
            if any(isinstance(t, Value) for t in leaves):
                raise ValueError(f'Layer "{self.name}": cannot mix symbolic KerasTensors '
                                 f"(kiln.Input) and graph values in one call")
            return self._call_functional(args, kwargs, training)
        if any(isinstance(t, Value) for t in leaves):
            return self._call_symbolic(args, kwargs, training)
        return self._call_eager(args, kwargs, training)

    def _call_symbolic(self, args, kwargs=None, training=None, record=True):
        """Append this layer's ops for ``call(*args, **kwargs)`` to the graph being
        built; ``args``/``kwargs`` hold IR Values (or structures of them)."""
        if isinstance(args, Value):   # the one-input form
            args = (args,)
        args, kwargs = tuple(args), dict(kwargs or {})
        given = [to_keras_shape(v.shape) for v in tree.flatten(args[0]) if isinstance(v, Value)]
        was_built = self.built
        assert_input_compatibility(self.input_spec, given, self.name)
        self._build_from_call_args(args, kwargs)
        if training is None:
            training = _TRAINING.get()
        training = bool(training)
        if _call_takes_training(type(self)):
            kwargs["training"] = training
        token = _TRAINING.set(training)
        try:
            out = self.call(*args, **kwargs)
        except OpTypeError as e:
            extra = ""
            built_for = self._build_input_shape
            if was_built and built_for is not None and len(given) == 1 \
                    and tuple(built_for) != given[0]:
                extra = (f" (the layer was built for input shape {_fmt(built_for)}, "
                         f"got input shape {_fmt(given[0])})")
            raise OpTypeError(f'{type(self).__name__} layer "{self.name}": {e}{extra}') from None
        finally:
            _TRAINING.reset(token)
        leaves = tree.flatten(out)
        if not leaves or not all(isinstance(v, Value) for v in leaves):
            bad = next((v for v in leaves if not isinstance(v, Value)), None)
            raise TypeError(f'{type(self).__name__} layer "{self.name}": call() must return an '
                            f"IR Value (or a list / tuple / dict of them), got "
                            f"{type(bad if leaves else out).__name__}")
        if record:
            self._last_output_shape = tree.map_structure(lambda v: to_keras_shape(v.shape), out)
        return out

    def _call_functional(self, args, kwargs, training=None):
        """Record a call on symbolic KerasTensors (the functional API)."""
        from .node import KerasTensor, Node
        g = Graph("trace")
        values = {}

        def to_value(t):
            if not isinstance(t, KerasTensor):
                return t
            if id(t) not in values:
                values[id(t)] = g.add_input(f"x{len(values)}",
                                            TensorType(to_ir_shape(t.shape), to_dtype(t.dtype)))
            return values[id(t)]

        sym_args = tree.map_structure(to_value, list(args))
        sym_kwargs = tree.map_structure(to_value, dict(kwargs))
        with g.building():
            out = self._call_symbolic(sym_args, sym_kwargs, training)
        nodes = self.__dict__.setdefault("_inbound_nodes", [])
        index = len(nodes)
        flat = tree.flatten(out)
        kts = [KerasTensor(to_keras_shape(v.shape), dtype_name(v.dtype), history=(self, index, i))
               for i, v in enumerate(flat)]
        outputs = tree.pack_as(out, kts)
        nodes.append(Node(self, args, kwargs, outputs, training))
        return outputs

    def _call_eager(self, args, kwargs=None, training=None):
        """Run the layer on numpy data: a graph of this one layer, interpreted."""
        if training:
            raise NotImplementedError("calling layers eagerly with training=True comes with the "
                                      "[training] work")
        g = Graph(ir_name(self.name))
        arrays = []

        def to_value(x):
            a = np.asarray(x)
            if a.dtype.kind == "f":
                a = a.astype(self._dtype.np, copy=False)
            shape = (None,) + a.shape[1:] if a.ndim else ()
            arrays.append(a)
            return g.add_input(f"x{len(arrays) - 1}" if len(arrays) > 1 else "x",
                               TensorType(to_ir_shape(shape), to_dtype(a.dtype)))

        first = args[0]
        if isinstance(first, (list, tuple, dict)) and all(
                isinstance(a, (np.ndarray, np.generic)) for a in tree.flatten(first)):
            sym_first = tree.map_structure(to_value, first)   # several inputs
        else:
            sym_first = to_value(first)   # one array (a nested list of numbers too)
        rest = [to_value(a) if isinstance(a, np.ndarray) else a for a in args[1:]]
        sym_kwargs = {k: to_value(v) if isinstance(v, np.ndarray) else v
                      for k, v in (kwargs or {}).items()}
        with g.building():
            out = self._call_symbolic([sym_first, *rest], sym_kwargs, False)
        flat = tree.flatten(out)
        g.set_outputs(flat)
        res = interpret(g, *arrays)
        res = list(res) if len(flat) > 1 else [res]
        return tree.pack_as(out, res)

    def compute_output_shape(self, input_shape):
        """The output shape for ``input_shape`` (batch dim None; a list of shapes for
        layers called on several tensors), found by tracing ``call`` through the IR
        builder (which builds the layer if needed)."""
        shapes = standardize_shapes(input_shape)
        self._maybe_build(shapes)
        g = Graph("trace")
        count = [0]

        def to_value(shape):
            count[0] += 1
            return g.add_input(f"x{count[0]}", TensorType(to_ir_shape(shape), self._dtype))

        with g.building():
            x = tree.map_structure(lambda s: to_value(s.shape), _shape_structure(shapes))
            out = self._call_symbolic((x,), {}, False, record=False)
        return tree.map_structure(lambda v: to_keras_shape(v.shape), out)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
