"""Comparisons, logic, where, and the data-movement ops (broadcast_to, concat, slice,
pad, gather) and argmax through the interpreter, against independent formulas
written here (Python loops and list slicing, not the numpy calls the references
use); and their type errors."""
import itertools
import operator

import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, OpTypeError, TensorType

from .test_ops import BROADCAST_PAIRS, _explicit_broadcast, run_op

rng = np.random.default_rng(7)
COVERED = set()
F = lambda *s: TensorType(s, DType.f32)  # noqa: E731
B = lambda *s: TensorType(s, DType.bool)  # noqa: E731
I32 = lambda *s: TensorType(s, DType.i32)  # noqa: E731


def covers(*names):
    def deco(fn):
        COVERED.update(names)
        return fn
    return deco


def ints(shape, lo=-5, hi=5, dtype=np.int32):
    return rng.integers(lo, hi, size=shape).astype(dtype)


# -- comparisons ------------------------------------------------------------------------------
COMPARE = {"greater": operator.gt, "greater_equal": operator.ge, "less": operator.lt,
           "less_equal": operator.le, "equal": operator.eq, "not_equal": operator.ne}
COVERED.update(COMPARE)


def _pointwise(fn, arrays, shape):
    """fn applied to Python scalars at every index, operands broadcast by index arithmetic."""
    bs = [_explicit_broadcast(a, shape) for a in arrays]
    out = np.empty(shape, object)
    for idx in itertools.product(*map(range, shape)):
        out[idx] = fn(*(b[idx].item() for b in bs))
    return out


@pytest.mark.parametrize("name", sorted(COMPARE))
@pytest.mark.parametrize("sa,sb,sout", BROADCAST_PAIRS)
def test_compare_float(name, sa, sb, sout):
    # small integers as floats, so that equal values occur
    a, b = ints(sa).astype(np.float32), ints(sb).astype(np.float32)
    got, t = run_op(name, a, b)
    assert t == TensorType(sout, DType.bool) and got.dtype == np.bool_
    assert got.tolist() == _pointwise(COMPARE[name], [a, b], sout).tolist()


@pytest.mark.parametrize("name", sorted(COMPARE))
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_compare_dtypes_and_nan(name, dtype):
    a, b = ints((7, 5), dtype=dtype), ints((5,), dtype=dtype)
    got, _ = run_op(name, a, b)
    assert got.tolist() == _pointwise(COMPARE[name], [a, b], (7, 5)).tolist()
    nan = np.array([np.nan, 1.0, np.nan, -np.inf], np.float32)
    other = np.array([1.0, np.nan, np.nan, -np.inf], np.float32)
    got, _ = run_op(name, nan, other)
    # every comparison with NaN is false but !=; -inf == -inf
    want = [name == "not_equal"] * 3 + [name in ("greater_equal", "less_equal", "equal")]
    assert got.tolist() == want


@pytest.mark.parametrize("name", ["equal", "not_equal"])
def test_equal_on_bools(name):
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    got, _ = run_op(name, a, b)
    assert got.tolist() == [COMPARE[name](x, y) for x, y in zip(a.tolist(), b.tolist())]


# -- logic --------------------------------------------------------------------------------------
LOGIC = {"logical_and": lambda x, y: x and y, "logical_or": lambda x, y: x or y}
COVERED.update(LOGIC)


@pytest.mark.parametrize("name", sorted(LOGIC))
@pytest.mark.parametrize("sa,sb,sout", BROADCAST_PAIRS)
def test_logical_binary(name, sa, sb, sout):
    a, b = rng.random(sa) > 0.5, rng.random(sb) > 0.5
    got, t = run_op(name, a, b)
    assert t == TensorType(sout, DType.bool)
    assert got.tolist() == _pointwise(LOGIC[name], [a, b], sout).tolist()


@covers("logical_not")
@pytest.mark.parametrize("shape", [(1,), (7, 33), (2, 1, 3)])
def test_logical_not(shape):
    a = rng.random(shape) > 0.5
    got, t = run_op("logical_not", a)
    assert t == TensorType(shape, DType.bool)
    assert got.tolist() == _pointwise(lambda x: not x, [a], shape).tolist()


# -- where ----------------------------------------------------------------------------------------
@covers("where")
@pytest.mark.parametrize("sc,sa,sb,sout", [((7, 33), (7, 33), (7, 33), (7, 33)),
                                           ((7, 1), (33,), (), (7, 33)),
                                           ((33,), (2, 7, 1), (7, 33), (2, 7, 33)),
                                           ((1,), (1,), (1,), (1,))])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_where(sc, sa, sb, sout, dtype):
    c = rng.random(sc) > 0.5
    a, b = ints(sa, dtype=dtype), ints(sb, 10, 20, dtype=dtype)
    got, t = run_op("where", c, a, b)
    assert t == TensorType(sout, DType.from_numpy(dtype)) and got.dtype == dtype
    assert got.tolist() == _pointwise(lambda k, x, y: x if k else y, [c, a, b], sout).tolist()


def test_where_builds_elu():
    # elu(x) = x if x > 0 else alpha * (exp(x) - 1): the frontend's composition
    g = Graph()
    x = g.add_input("x", F("N", 5))
    zero, alpha = g.constant(0.0), g.constant(1.5)
    y = g.op("where", g.op("greater", x, zero), x, g.op("mul", alpha, g.op("expm1", x)))
    g.set_outputs([y])
    xv = np.array([[-2.0, -1e-4, 0.0, 1e-4, 3.0]], np.float32)
    want = [v if v > 0 else 1.5 * (np.exp(np.float64(v)) - 1) for v in xv[0].tolist()]
    np.testing.assert_allclose(kiln.interpret(g, xv)[0], want, rtol=1e-6)


# -- broadcast_to -----------------------------------------------------------------------------------
@covers("broadcast_to")
@pytest.mark.parametrize("src,shape", [((33,), (7, 33)), ((7, 1), (2, 7, 33)), ((), (3,)),
                                       ((1, 1), (1, 1)), ((2, 1, 3), (2, 4, 3))])
def test_broadcast_to(src, shape):
    x = rng.standard_normal(src).astype(np.float32)
    got, t = run_op("broadcast_to", x, shape=list(shape))
    assert t == F(*shape)
    np.testing.assert_array_equal(got, _explicit_broadcast(x, shape))


def test_broadcast_to_symbolic():
    g = Graph()
    x = g.add_input("x", F("N", 1))
    b = g.add_param("b", np.arange(3, dtype=np.float32))
    y = g.op("add", g.op("broadcast_to", b, shape=["N", 3]), x)
    assert y.type == F("N", 3)
    g.set_outputs([y])
    got = kiln.interpret(g, np.array([[10.0], [20.0]], np.float32))
    assert got.tolist() == [[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]]


# -- concat -----------------------------------------------------------------------------------------
@covers("concat")
@pytest.mark.parametrize("shapes,axis", [([(2, 3), (2, 5)], 1), ([(2, 3), (4, 3), (1, 3)], 0),
                                         ([(2, 3, 4), (2, 1, 4)], -2), ([(5,)], 0),
                                         ([(1, 7, 2), (1, 7, 1), (1, 7, 3)], 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_concat(shapes, axis, dtype):
    xs = [(rng.standard_normal(s) * 5).astype(dtype) for s in shapes]
    got, t = run_op("concat", *xs, axis=axis)
    ax = axis % len(shapes[0])
    want_shape = list(shapes[0])
    want_shape[ax] = sum(s[ax] for s in shapes)
    assert t == TensorType(tuple(want_shape), DType.from_numpy(dtype))
    want = np.empty(want_shape, dtype)
    off = 0
    for x in xs:  # place each operand at its offset along the axis
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(off, off + x.shape[ax])
        want[tuple(idx)] = x
        off += x.shape[ax]
    np.testing.assert_array_equal(got, want)


def test_concat_keeps_batch_symbolic():
    g = Graph()
    a, b = g.add_input("a", F("N", 2)), g.add_input("b", F("N", 3))
    y = g.op("concat", a, b, axis=1)
    assert y.type == F("N", 5)


# -- slice ------------------------------------------------------------------------------------------
def _pyslice(lst, specs, depth=0):
    """Python list slicing, axis by axis: specs = {axis: (begin, end, step)}."""
    if not isinstance(lst, list):
        return lst
    if depth in specs:
        lst = lst[slice(*specs[depth])]
    return [_pyslice(e, specs, depth + 1) for e in lst]


SLICES = [((7, 33), [1], [2], [30], []), ((7, 33), [0, 1], [-3, 0], [100, 33], [1, 5]),
          ((7, 33), [1], [-1], [-34], [-1]), ((7, 33), [0], [5], [1], [-2]),
          ((2, 7, 33), [2, 0], [3, 1], [4, 2], [1, 1]), ((2, 7, 33), [-2], [0], [7], [3]),
          ((7,), [0], [3], [3], [1]), ((1, 33), [0], [0], [1], [])]


@covers("slice")
@pytest.mark.parametrize("shape,axes,begin,end,steps", SLICES)
def test_slice(shape, axes, begin, end, steps):
    x = rng.standard_normal(shape).astype(np.float32)
    got, t = run_op("slice", x, axes=axes, begin=begin, end=end, steps=steps)
    specs = {a % len(shape): (b, e, s) for a, b, e, s in zip(axes, begin, end, steps or [1] * len(axes))}
    want = np.array(_pyslice(x.tolist(), specs), np.float32).reshape(t.concrete({}))
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_slice_never_needs_the_batch():
    g = Graph()
    x = g.add_input("x", F("N", 10, 4))
    y = g.op("slice", x, axes=[1], begin=[-1], end=[-11], steps=[-1])  # reverse time
    assert y.type == F("N", 10, 4)
    g.set_outputs([y])
    xv = rng.standard_normal((3, 10, 4)).astype(np.float32)
    np.testing.assert_array_equal(kiln.interpret(g, xv), xv[:, ::-1])


# -- pad --------------------------------------------------------------------------------------------
@covers("pad")
@pytest.mark.parametrize("shape,pads,value", [((7, 33), [1, 2, 0, 3], 0.0), ((2, 3, 4), [0, 0, 2, 2, 1, 0], -1.5),
                                              ((1,), [3, 0], 7.0), ((2, 2), [0, 0, 0, 0], 1.0)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_pad(shape, pads, value, dtype):
    if dtype == np.int32:
        value = float(int(value))
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    got, t = run_op("pad", x, pads=pads, value=value)
    out_shape = tuple(d + pads[2 * k] + pads[2 * k + 1] for k, d in enumerate(shape))
    assert t == TensorType(out_shape, DType.from_numpy(dtype))
    want = np.full(out_shape, dtype(value), dtype)
    want[tuple(slice(pads[2 * k], pads[2 * k] + d) for k, d in enumerate(shape))] = x
    np.testing.assert_array_equal(got, want)


# -- gather -----------------------------------------------------------------------------------------
@covers("gather")
@pytest.mark.parametrize("pshape,ishape,axis", [((10, 4), (3, 5), 0), ((10, 4), (1, 1), 0), ((10,), (6,), 0),
                                                ((3, 10, 2), (2, 4), 1), ((3, 10), (7,), -1), ((5, 3), (), 0)])
@pytest.mark.parametrize("idtype", [np.int32, np.int64])
def test_gather(pshape, ishape, axis, idtype):
    ax = axis % len(pshape)
    params = rng.standard_normal(pshape).astype(np.float32)
    idx = rng.integers(0, pshape[ax], size=ishape).astype(idtype)
    got, t = run_op("gather", params, idx, axis=axis)
    want_shape = pshape[:ax] + ishape + pshape[ax + 1:]
    assert t == F(*want_shape)
    want = np.empty(want_shape, np.float32)
    for o in itertools.product(*map(range, pshape[:ax])):
        for i in itertools.product(*map(range, ishape)):
            want[o + i] = params[o + (int(idx[i]),)]
    np.testing.assert_array_equal(got, want)


def test_gather_embedding_shape_and_out_of_range():
    g = Graph()
    ids = g.add_input("ids", I32("N", 6))
    emb = g.add_param("emb", rng.standard_normal((10, 3)).astype(np.float32))
    y = g.op("gather", emb, ids)
    assert y.type == F("N", 6, 3)
    g.set_outputs([y])
    for bad in (10, -1):
        with pytest.raises(ValueError, match=rf"gather: index {bad} is out of range for axis 0 of size 10"):
            kiln.interpret(g, np.array([[0, 1, 2, bad, 4, 5]], np.int32))


# -- argmax -----------------------------------------------------------------------------------------
@covers("argmax")
@pytest.mark.parametrize("shape,axis", [((7, 33), 1), ((7, 33), 0), ((2, 7, 3), 1), ((2, 7, 3), -1),
                                        ((1,), 0), ((5, 1), 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax(shape, axis, keepdims):
    x = ints(shape, -3, 3).astype(np.float32)  # ties: the first index wins
    got, t = run_op("argmax", x, axis=axis, keepdims=keepdims)
    ax = axis % len(shape)
    moved = np.moveaxis(x, ax, -1)
    want = np.array([r.index(max(r)) for r in moved.reshape(-1, shape[ax]).tolist()], np.int64)
    want = want.reshape(moved.shape[:-1])
    if keepdims:
        want = np.expand_dims(want, ax)
    assert t == TensorType(want.shape, DType.i64) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_argmax_nan_and_ints():
    got, _ = run_op("argmax", np.array([[1.0, np.nan, 5.0, np.nan], [-np.inf, -np.inf, -1.0, -2.0]],
                                       np.float32), axis=1)
    assert got.tolist() == [1, 2]  # the first NaN wins, as in numpy
    got, _ = run_op("argmax", np.array([[3, 9, 9], [-5, -7, -6]], np.int32), axis=1)
    assert got.tolist() == [1, 0]


# -- type errors --------------------------------------------------------------------------------------
ERRORS = [
    ("greater", [F(3), TensorType((3,), DType.i32)], {}, r"greater: operand dtypes differ: f32\[3\], i32\[3\]"),
    ("less", [B(3), B(3)], {}, r"less: expects numeric operands, got bool\[3\], bool\[3\]"),
    ("equal", [F(7, 3), F(7, 2)], {}, r"equal: cannot broadcast f32\[7,3\], f32\[7,2\]"),
    ("logical_and", [B(3), F(3)], {}, r"logical_and: expects bool operands, got bool\[3\], f32\[3\]"),
    ("logical_not", [F(3)], {}, r"logical_not: expects bool operands, got f32\[3\]"),
    ("where", [F(3), F(3), F(3)], {}, r"where: condition must be bool, got f32\[3\]"),
    ("where", [B(3), F(3), I32(3)], {}, r"where: operand dtypes differ: f32\[3\], i32\[3\]"),
    ("where", [B(4), F(3), F(3)], {}, r"where: cannot broadcast bool\[4\], f32\[3\], f32\[3\]"),
    ("broadcast_to", [F(3)], {"shape": [4]}, r"broadcast_to: cannot broadcast f32\[3\] to \[4\]"),
    ("broadcast_to", [F(2, 3)], {"shape": [3]}, r"broadcast_to: cannot broadcast f32\[2,3\] to \[3\]"),
    ("broadcast_to", [F(3)], {"shape": [-1, 3]}, r"broadcast_to: cannot broadcast f32\[3\] to \[-1,3\]"),
    ("broadcast_to", [F("N", 3)], {"shape": [2, 3]}, r"broadcast_to: cannot broadcast f32\[N,3\] to \[2,3\]"),
    ("concat", [], {"axis": 0}, r"concat: expects at least one operand"),
    ("concat", [F(2, 3), F(2, 3, 1)], {"axis": 0}, r"concat: operand ranks differ"),
    ("concat", [F(2, 3), F(3, 3)], {"axis": 1}, r"concat: along axis 1, the other dimensions must agree: "
                                                r"f32\[2,3\], f32\[3,3\] \(axis 0 differs\)"),
    ("concat", [F("N", 3), F("N", 3)], {"axis": 0}, r"concat: cannot concatenate along axis 0 of f32\[N,3\]: "
                                                    r"its size N is only known at run time"),
    ("concat", [F(2, 3), TensorType((2, 3), DType.f64)], {"axis": 0}, r"concat: operand dtypes differ"),
    ("concat", [F(2, 3)], {"axis": 2}, r"concat: axis 2 is out of range for rank 2"),
    ("slice", [F(7, 3)], {"axes": [0], "begin": [0], "end": [1, 2]},
     r"slice: axes, begin, end and steps need one entry per sliced axis"),
    ("slice", [F(7, 3)], {"axes": [0, 0], "begin": [0, 0], "end": [1, 1]}, r"slice: repeated axis in \[0, 0\]"),
    ("slice", [F(7, 3)], {"axes": [1], "begin": [0], "end": [1], "steps": [0]}, r"slice: step must not be 0"),
    ("slice", [F("N", 3)], {"axes": [0], "begin": [0], "end": [1]}, r"slice: cannot slice axis 0 of f32\[N,3\]"),
    ("slice", [F(7, 3)], {"axes": [2], "begin": [0], "end": [1]}, r"slice: axis 2 is out of range for rank 2"),
    ("slice", [F(7, 3)], {"axes": [0], "begin": [0]}, r"slice: missing required attribute end"),
    ("pad", [F(7, 3)], {"pads": [1, 1]}, r"pad: pads must be 4 numbers >= 0 \(before, after per axis\) for "
                                         r"f32\[7,3\], got \[1, 1\]"),
    ("pad", [F(7, 3)], {"pads": [0, 0, -1, 0]}, r"pad: pads must be 4 numbers >= 0"),
    ("pad", [F("N", 3)], {"pads": [1, 0, 0, 0]}, r"pad: cannot pad axis 0 of f32\[N,3\]"),
    ("pad", [I32(3)], {"pads": [1, 0], "value": 0.5}, r"pad: value 0.5 is not representable in i32\[3\]"),
    ("gather", [F(10, 3), F(4)], {}, r"gather: indices must be i32 or i64, got f32\[4\]"),
    ("gather", [F(10, 3), I32(4)], {"axis": 2}, r"gather: axis 2 is out of range for rank 2"),
    ("argmax", [B(3)], {"axis": 0}, r"argmax: expects a numeric operand, got bool\[3\]"),
    ("argmax", [F(3, 2)], {"axis": 2}, r"argmax: axis 2 is out of range for rank 2"),
    ("argmax", [F(3, 0)], {"axis": 1}, r"argmax: axis 1 of f32\[3,0\] is empty"),
    ("argmax", [F(3)], {}, r"argmax: missing required attribute axis"),
    ("reduce_min", [B(3)], {"axes": [0]}, r"reduce_min: expects a numeric operand"),
]


@pytest.mark.parametrize("op,types,attrs,msg", ERRORS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_type_errors(op, types, attrs, msg):
    g = Graph()
    ins = [g.add_input(f"x{i}", t) for i, t in enumerate(types)]
    with pytest.raises(OpTypeError, match=msg):
        g.op(op, *ins, **attrs)
    assert g.nodes == []


def test_new_ops_print_and_parse_back():
    g = Graph("layers")
    x = g.add_input("x", F("N", 6, 5, 3))
    ids = g.add_input("ids", I32("N", 4))
    w = g.add_param("w", rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
    emb = g.add_param("emb", rng.standard_normal((10, 2)).astype(np.float32))
    y = g.op("conv2d", x, w, strides=(2, 1), dilations=(1, 2), pads=(1, 1, 2, 2), groups=1)
    t = g.op("conv2d_transpose", y, g.add_param("wt", rng.standard_normal((2, 2, 5, 4)).astype(np.float32)),
             strides=(2, 2), pads=(0, 1, 0, 0), output_padding=(1, 0))
    p = g.op("max_pool2d", g.op("pad", x, pads=[0, 0, 1, 1, 0, 0, 0, 0], value=-1.5),
             window=(2, 2), strides=(2, 2), pads=(0, 1, 0, 1))
    s = g.op("slice", x, axes=[1], begin=[-1], end=[-7], steps=[-1])
    c = g.op("concat", s, g.op("slice", x, axes=[2], begin=[0], end=[2]), axis=2)
    m = g.op("where", g.op("logical_not", g.op("less", x, g.op("broadcast_to", g.constant(0.5), shape=["N", 1, 1, 1]))),
             x, g.op("softplus", x))
    g.set_outputs([t, p, c, m, g.op("gather", emb, ids), g.op("argmax", x, axis=-1, keepdims=True),
                   g.op("avg_pool2d", x, window=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1))])
    text = str(g)
    assert "slice(%x) {axes=[1], begin=[-1], end=[-7], steps=[-1]}" in text
    assert "pad(%x) {pads=[0, 0, 1, 1, 0, 0, 0, 0], value=-1.5}" in text
    g2 = kiln.ir.parse(text)
    assert str(g2) == text
    kiln.ir.verify(g2)
    xv = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    iv = rng.integers(0, 10, (2, 4)).astype(np.int32)
    for a, b in zip(kiln.interpret(g, xv, iv), kiln.interpret(g2, xv, iv, params=g.param_values)):
        np.testing.assert_array_equal(a, b)
