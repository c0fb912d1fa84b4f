"""``kiln.ops``: a Keras-ops-shaped namespace over the IR ops, for layers' ``call``.

Each function appends nodes to the graph being built (``kiln.ir.current_graph()``,
i.e. inside ``with graph.building():`` -- layers are always called that way). Operands
may be

- IR ``Value``\\ s of that graph,
- layer ``Variable``\\ s: resolved to the graph's ``param`` of that variable, added on
  first use as ``%<layer>.<weight>`` (e.g. ``%dense.kernel``) with the variable's value,
- Python / numpy scalars and arrays: ``constant`` nodes, of the other operand's dtype.

Shapes and dtypes are checked by the IR ops' type inference (errors are
``kiln.ir.OpTypeError``).
"""
from __future__ import annotations

import weakref

import numpy as np

from ..ir.graph import Graph, Value, current_graph
from ..ir.opdef import OpTypeError
from ..ir.types import DType, is_symbol
from .naming import ir_name
from .shapes import to_dtype
from .variables import Variable

# graph -> {id(variable): (variable, param Value)}
_params: "weakref.WeakKeyDictionary[Graph, dict]" = weakref.WeakKeyDictionary()


def param_for(variable: Variable, graph: Graph | None = None) -> Value:
    """The ``param`` Value of ``variable`` in ``graph`` (added on first use)."""
    g = graph if graph is not None else current_graph()
    table = _params.setdefault(g, {})
    hit = table.get(id(variable))
    if hit is not None and hit[0] is variable:
        return hit[1]
    name = g.unique_param_name(ir_name(variable.path.replace("/", ".")))
    v = g.add_param(name, variable.value)
    table[id(variable)] = (variable, v)
    return v


def assign(variable: Variable, value) -> None:
    """Update ``variable`` to ``value`` at the end of every run of the graph being built
    (a state update ``%param <- value``: BatchNormalization's moving statistics,
    optimizer slots). The value must have the variable's shape and dtype."""
    if not isinstance(variable, Variable):
        raise TypeError(f"kiln.ops.assign: expected a layer Variable, got {type(variable).__name__}")
    g = current_graph()
    p = param_for(variable, g)
    g.add_update(p, convert(value, p.dtype))


def _is_const(x) -> bool:
    return isinstance(x, (bool, int, float, complex, np.number, np.bool_, np.ndarray, list, tuple))


def convert(x, like: DType | None = None) -> Value:
    """Turn an operand into a Value of the current graph."""
    if isinstance(x, Value):
        return x
    if isinstance(x, Variable):
        return param_for(x)
    if _is_const(x):
        a = np.asarray(x)
        if like is not None:
            dt = like
        elif isinstance(x, np.ndarray) or isinstance(x, np.generic):
            dt = DType.from_numpy(a.dtype)
        else:  # Python numbers and lists: floats are float32, ints int32 (as Keras)
            dt = {"f": DType.f32, "i": DType.i32, "u": DType.i32, "b": DType.bool}.get(a.dtype.kind)
            if dt is None:
                raise TypeError(f"kiln.ops: cannot make a constant of {x!r}")
        return current_graph().constant(a, dt)
    raise TypeError(f"kiln.ops: expected an IR Value, a layer Variable or a number, "
                    f"got {type(x).__name__}")


def _dtype_of(x) -> DType | None:
    if isinstance(x, Value):
        return x.dtype
    if isinstance(x, Variable):
        return to_dtype(x.dtype)
    return None


def _binary(op: str, a, b) -> Value:
    like = _dtype_of(a) or _dtype_of(b)
    return current_graph().op(op, convert(a, like), convert(b, like))


def _unary(op: str, x, **attrs) -> Value:
    return current_graph().op(op, convert(x), **attrs)


# -- binary arithmetic (numpy broadcasting) ----------------------------------------------
def add(x1, x2):
    return _binary("add", x1, x2)


def subtract(x1, x2):
    return _binary("sub", x1, x2)


def multiply(x1, x2):
    return _binary("mul", x1, x2)


def divide(x1, x2):
    return _binary("div", x1, x2)


def maximum(x1, x2):
    return _binary("maximum", x1, x2)


def minimum(x1, x2):
    return _binary("minimum", x1, x2)


def matmul(x1, x2):
    """numpy matmul for rank >= 2 operands (leading dimensions broadcast)."""
    return _binary("matmul", x1, x2)


# -- unary math -------------------------------------------------------------------------
def negative(x):
    return _unary("neg", x)


def exp(x):
    return _unary("exp", x)


def log(x):
    return _unary("log", x)


def sqrt(x):
    return _unary("sqrt", x)


def relu(x):
    return _unary("relu", x)


def sigmoid(x):
    return _unary("sigmoid", x)


def tanh(x):
    return _unary("tanh", x)


def softmax(x, axis=-1):
    return _unary("softmax", x, axis=axis)


def cast(x, dtype):
    return _unary("cast", x, dtype=to_dtype(dtype))


# -- reductions -------------------------------------------------------------------------
def _axes(x: Value, axis) -> tuple:
    if axis is None:
        return tuple(range(x.type.rank))
    return (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)


def _reduce(op: str, x, axis, keepdims):
    x = convert(x)
    return current_graph().op(op, x, axes=_axes(x, axis), keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False):  # noqa: A001 (Keras name)
    return _reduce("reduce_sum", x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    return _reduce("reduce_mean", x, axis, keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001 (Keras name)
    return _reduce("reduce_max", x, axis, keepdims)


# -- shapes -----------------------------------------------------------------------------
def reshape(x, newshape):
    """Row-major reshape. ``None`` in ``newshape`` stands for the input's dimension at
    that axis (the batch dimension at axis 0); one ``-1`` is inferred by the IR (when
    the input has one unknown dimension and ``newshape`` none, ``-1`` means it)."""
    x = convert(x)
    if isinstance(newshape, (int, np.integer)):
        newshape = (newshape,)
    shape = [x.shape[i] if d is None else d for i, d in enumerate(newshape)]
    g = current_graph()
    syms = x.type.symbols
    if -1 in shape and len(syms) == 1 and not any(is_symbol(d) for d in shape):
        guess = [syms[0] if d == -1 else d for d in shape]
        try:
            g.make_node("reshape", [x], {"shape": guess})
        except OpTypeError:
            pass
        else:
            shape = guess
    return g.op("reshape", x, shape=shape)


def transpose(x, axes=None):
    x = convert(x)
    perm = tuple(reversed(range(x.type.rank))) if axes is None else tuple(axes)
    return current_graph().op("transpose", x, perm=perm)


__all__ = ["assign", "add", "subtract", "multiply", "divide", "maximum", "minimum", "matmul",
           "negative", "exp", "log", "sqrt", "relu", "sigmoid", "tanh", "softmax", "cast", "sum",
           "mean", "max", "reshape", "transpose", "convert", "param_for"]

# The rest of the Keras-ops namespace, by family (they build on the functions above).
from .ops_array import *  # noqa: E402,F401,F403
from .ops_math import *  # noqa: E402,F401,F403
from .ops_nn import *  # noqa: E402,F401,F403
from . import ops_array as _ops_array, ops_math as _ops_math, ops_nn as _ops_nn  # noqa: E402

__all__ += _ops_array.__all__ + _ops_math.__all__ + _ops_nn.__all__


# -- Python operators on IR Values inside a layer's call ----------------------------------
# (``x + b``, ``x @ w``, ``-x``, ``x[:, 0]``, ``x > 0``, ... as on Keras tensors). Equality
# is NOT overloaded: Values stay hashable by identity, as graph code relies on.
def _install_value_operators():
    from ..ir.graph import Value

    def rev(fn):
        return lambda a, b: fn(b, a)

    table = {
        "__add__": add, "__radd__": rev(add), "__sub__": subtract, "__rsub__": rev(subtract),
        "__mul__": multiply, "__rmul__": rev(multiply), "__truediv__": divide,
        "__rtruediv__": rev(divide), "__matmul__": matmul, "__rmatmul__": rev(matmul),
        "__pow__": _ops_math.power, "__rpow__": rev(_ops_math.power), "__neg__": negative,
        "__abs__": _ops_math.abs, "__getitem__": _ops_array.getitem,
        "__gt__": _ops_math.greater, "__ge__": _ops_math.greater_equal,
        "__lt__": _ops_math.less, "__le__": _ops_math.less_equal,
    }
    for name, fn in table.items():
        if name not in Value.__dict__:
            setattr(Value, name, fn)
        if name not in Variable.__dict__:   # inside a trace: ops; outside: numpy on the value
            setattr(Variable, name, _variable_operator(name, fn))
    if "ndim" not in Value.__dict__:
        Value.ndim = property(lambda v: v.type.rank)


def _variable_operator(name, fn):
    import operator

    def op(self, *args):
        try:
            current_graph()
        except RuntimeError:
            pass
        else:
            return fn(self, *args)
        if name == "__getitem__":
            return self.value[args[0]]
        npfn = getattr(operator, name.replace("__r", "__", 1) if name.startswith("__r")
                       and name != "__rshift__" else name, None)
        if name.startswith("__r") and npfn is not None:
            return npfn(np.asarray(args[0]), self.numpy())
        return npfn(self.numpy(), *args) if args else npfn(self.numpy())
    op.__name__ = name
    return op


_install_value_operators()
