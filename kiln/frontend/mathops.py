"""IR building blocks shared by losses, metrics and optimizers.

Every function appends nodes to the graph being built (``current_graph()``) and takes
IR ``Value``\\ s (Python numbers become constants of the other operand's dtype, as in
kiln.ops). Shapes may hold the batch symbol ``N``. Nothing here is a Keras API; it
is the vocabulary the Keras-named classes are written in.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Value, current_graph
from ..ir.ops.vjp_util import count as _count
from ..ir.types import DType, is_symbol
from . import ops as _ops

EPSILON = 1e-7      # keras.backend.epsilon()


def g_():
    return current_graph()


def const(v, like: Value | DType = DType.f32) -> Value:
    dt = like.dtype if isinstance(like, Value) else like
    return g_().constant(v, dt)


def _v(x, like=None) -> Value:
    if isinstance(x, Value):
        return x
    return const(x, like.dtype if isinstance(like, Value) else DType.f32)


def _bin(op, a, b):
    like = a if isinstance(a, Value) else b
    return g_().op(op, _v(a, like), _v(b, like))


def add(a, b):
    return _bin("add", a, b)


def sub(a, b):
    return _bin("sub", a, b)


def mul(a, b):
    return _bin("mul", a, b)


def div(a, b):
    return _bin("div", a, b)


def maximum(a, b):
    return _bin("maximum", a, b)


def minimum(a, b):
    return _bin("minimum", a, b)


def power(a, b):
    return _bin("pow", a, b)


def equal(a, b):
    return _bin("equal", a, b)


def not_equal(a, b):
    return _bin("not_equal", a, b)


def greater(a, b):
    return _bin("greater", a, b)


def greater_equal(a, b):
    return _bin("greater_equal", a, b)


def less_equal(a, b):
    return _bin("less_equal", a, b)


def logical_and(a, b):
    return g_().op("logical_and", a, b)


def logical_or(a, b):
    return g_().op("logical_or", a, b)


def _un(op, x, **attrs):
    return g_().op(op, x, **attrs)


def neg(x):
    return _un("neg", x)


def square(x):
    return _un("square", x)


def sqrt(x):
    return _un("sqrt", x)


def exp(x):
    return _un("exp", x)


def log(x):
    return _un("log", x)


def abs_(x):
    return _un("abs", x)


def softplus(x):
    return _un("softplus", x)


def floor(x):
    return _un("floor", x)


def cast(x, dtype: DType):
    return x if x.dtype is dtype else _un("cast", x, dtype=dtype)


def where(c, a, b):
    like = a if isinstance(a, Value) else b
    return g_().op("where", c, _v(a, like), _v(b, like))


def clip(x, lo, hi):
    """minimum(maximum(x, lo), hi) (Keras ``ops.clip``)."""
    return minimum(maximum(x, lo), hi)


def reduce(op, x, axis=None, keepdims=False):
    if x.type.rank == 0:
        return x
    if axis is None:
        axes = tuple(range(x.type.rank))
    else:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return g_().op(op, x, axes=axes, keepdims=bool(keepdims))


def mean(x, axis=None, keepdims=False):
    return reduce("reduce_mean", x, axis, keepdims)


def sum_(x, axis=None, keepdims=False):
    return reduce("reduce_sum", x, axis, keepdims)


def max_(x, axis=None, keepdims=False):
    return reduce("reduce_max", x, axis, keepdims)


def min_(x, axis=None, keepdims=False):
    return reduce("reduce_min", x, axis, keepdims)


def argmax(x, axis=-1):
    return g_().op("argmax", x, axis=axis)


def reshape(x, shape):
    return x if tuple(shape) == x.type.shape else g_().op("reshape", x, shape=tuple(shape))


def squeeze_last(x):
    return reshape(x, x.type.shape[:-1])


def expand_last(x):
    return reshape(x, x.type.shape + (1,))


def count(shape, like=None) -> Value:
    """The number of elements of ``shape`` (may hold symbols) as an f32 scalar."""
    return _count(g_(), tuple(shape), like if like is not None else const(0.0))


def batch_size(x: Value) -> Value:
    """The size of ``x``'s first axis as an f32 scalar (run-time for ``N``)."""
    return count(x.type.shape[:1])


def one_hot(labels: Value, depth: int, dtype: DType = DType.f32) -> Value:
    """labels (integers, any shape) -> ``labels.shape + (depth,)`` of 0/1."""
    lab = expand_last(cast(labels, DType.i32))
    iota = g_().constant(np.arange(depth, dtype=np.int32), DType.i32)
    return cast(g_().op("equal", lab, iota), dtype)


def log_softmax(x: Value, axis: int = -1) -> Value:
    """x - max - log(sum(exp(x - max))) along ``axis`` (stable)."""
    m = max_(x, axis, keepdims=True)
    z = sub(x, m)
    return sub(z, log(sum_(exp(z), axis, keepdims=True)))


def l2_normalize(x: Value, axis: int = -1) -> Value:
    """x * min(rsqrt(sum(x^2)), 1/epsilon) (Keras ``ops.normalize(order=2)``)."""
    s = sum_(square(x), axis, keepdims=True)
    inv = minimum(div(1.0, sqrt(s)), 1.0 / EPSILON)
    return mul(x, inv)


def divide_no_nan(a, b):
    """a / b, and 0 where b == 0."""
    zero = equal(b, 0.0)
    safe = where(zero, 1.0, b)
    return where(zero, 0.0, div(a, safe))


def squeeze_or_expand_to_same_rank(x1: Value, x2: Value, expand_rank_1: bool = True):
    """Keras' rule: when ranks differ by one and the larger has a last dim of 1,
    expand a rank-1 operand (``expand_rank_1``) or squeeze the larger one."""
    r1, r2 = x1.type.rank, x2.type.rank
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.type.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = expand_last(x2)
        else:
            x1 = squeeze_last(x1)
    if r2 == r1 + 1 and x2.type.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = expand_last(x1)
        else:
            x2 = squeeze_last(x2)
    return x1, x2


def broadcast_weights(sw: Value, values: Value) -> Value:
    """Sample weights ``[N]`` (or ``[N, ...]``) made to broadcast against ``values``
    (trailing 1s appended)."""
    if sw.type.rank < values.type.rank:
        sw = reshape(sw, sw.type.shape + (1,) * (values.type.rank - sw.type.rank))
    return sw


def is_static_dim(d) -> bool:
    return not is_symbol(d)


# re-exported from kiln.ops for one vocabulary
matmul = _ops.matmul


# -- running small graphs eagerly (losses, metrics, optimizers called on numpy) -------------

def eager_dtype(a: np.ndarray) -> DType:
    """How an eager numpy operand enters a graph: floats as f32 (Keras' floatx),
    integers as i32, bools as bool."""
    if a.dtype.kind == "b":
        return DType.bool
    if a.dtype.kind in "iu":
        return DType.i32
    if a.dtype.kind == "f":
        return DType.f32
    raise TypeError(f"expected numeric data, got an array of dtype {a.dtype}")


def run_eager(fn, *arrays, params: dict | None = None, name: str = "eager"):
    """Build ``fn(*input_values, **param_values)`` over static-shaped inputs and run it
    with the reference interpreter. ``fn`` returns a Value, a list of Values, or
    (outputs, {param name: new Value}) for state updates; returns the outputs (and the
    updated params when there are updates)."""
    from ..ir.graph import Graph
    from ..ir.interpreter import interpret
    from ..ir.types import TensorType
    g = Graph(name)
    arrs = [None if a is None else np.asarray(a) for a in arrays]
    ins = []
    for i, a in enumerate(arrs):
        if a is None:
            ins.append(None)
            continue
        dt = eager_dtype(a)
        arrs[i] = a.astype(dt.np)
        ins.append(g.add_input(f"a{i}", TensorType(a.shape, dt)))
    pvals = {k: g.add_param(k, np.asarray(v)) for k, v in (params or {}).items()}
    with g.building():
        res = fn(*ins, **({"params": pvals} if params is not None else {}))
    updates = {}
    if isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], dict):
        res, updates = res
    outs = res if isinstance(res, (list, tuple)) else [res]
    g.set_outputs(list(outs))
    for k, v in updates.items():
        g.add_update(pvals[k], v)
    out = interpret(g, *[a for a in arrs if a is not None], return_updates=bool(updates))
    return out
