"""Every registered op, run through the interpreter on a one-node graph, against an
independent numpy formula written here (computed in float64 where it matters);
and the type-inference errors, with their messages."""
import itertools
import math

import numpy as np
import pytest

import kiln
from kiln.ir import OPS, DType, Graph, OpTypeError, TensorType

rng = np.random.default_rng(0)

# Shapes with dims 1, 7, 33 and a batch of 1.
SHAPES = [(1,), (7,), (33,), (1, 33), (7, 33), (1, 7, 33), (2, 7, 1)]


def run_op(op, *arrays, types=None, **attrs):
    """Build graph(x0, x1, ...) -> op(x0, x1, ...) and interpret it on ``arrays``."""
    g = Graph("one")
    types = types or [TensorType(a.shape, DType.from_numpy(a.dtype)) for a in arrays]
    ins = [g.add_input(f"x{i}", t) for i, t in enumerate(types)]
    out = g.op(op, *ins, **attrs)
    g.set_outputs([out])
    kiln.ir.verify(g)
    return kiln.interpret(g, *arrays), out.type


def close(got, want, dtype=np.float32):
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    tol = dict(rtol=2e-6, atol=1e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.astype(np.float64), want, **tol)


def randn(shape, dtype=np.float32, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, size=shape).astype(dtype)


# -- the table of covered ops: name -> test function(s) below --------------------------------
COVERED = set()


def covers(*names):
    def deco(fn):
        COVERED.update(names)
        return fn
    return deco


def test_every_registered_op_has_a_test():
    from . import test_ops_data, test_ops_layout, test_ops_nn  # their tables count too
    # fusion: its region runs through the interpreter in tests/passes/test_fusion.py;
    # scan: tests/ir/test_scan.py
    from . import test_ops_grad
    covered = (COVERED | test_ops_data.COVERED | test_ops_nn.COVERED | test_ops_layout.COVERED
               | test_ops_grad.COVERED | {"fusion", "scan"}
               | {"random_uniform"}    # tests/training/test_random.py (reference vs SplitMix64)
               | {"lstm_cell_packed"}   # tests/codegen/test_lstm_cell.py (reference vs Keras' LSTM step)
               | {"lstm_project"})      # tests/codegen/test_lstm_cell.py (reference vs numpy)
    missing = set(OPS) - covered
    assert not missing, f"ops without a test in tests/ir/test_ops*.py: {sorted(missing)}"
    assert covered <= set(OPS), f"tests for ops that do not exist: {sorted(covered - set(OPS))}"


# -- unary ------------------------------------------------------------------------------------
def _tanh(x):
    e = np.exp(2 * np.clip(x, -40, 40))
    return (e - 1) / (e + 1)


def _erf_series(x):
    # 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1)); |x| <= 2.5 keeps cancellation small
    term, total = x.copy(), x.copy()
    for n in range(1, 80):
        term = term * (-x * x) / n
        total = total + term / (2 * n + 1)
    return total * 2.0 / np.sqrt(np.pi)


def _expm1_formula(x):
    small = np.abs(x) < 1e-3
    return np.where(small, x + x * x / 2 + x ** 3 / 6 + x ** 4 / 24, np.exp(x) - 1.0)


def _log1p_formula(x):
    small = np.abs(x) < 1e-3
    return np.where(small, x - x * x / 2 + x ** 3 / 3 - x ** 4 / 4, np.log(1.0 + x))


UNARY = {  # name -> (formula on float64, input range)
    "neg": (lambda x: 0.0 - x, (-3, 3)),
    "exp": (lambda x: np.e ** x, (-5, 5)),
    "log": (lambda x: np.log(x), (0.01, 10)),
    "sqrt": (lambda x: x ** 0.5, (0.0, 10)),
    "relu": (lambda x: np.where(x > 0, x, 0.0), (-3, 3)),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), (-8, 8)),
    "tanh": (_tanh, (-4, 4)),
    "abs": (lambda x: np.where(x < 0, -x, x), (-3, 3)),
    "square": (lambda x: x * x, (-3, 3)),
    "sign": (lambda x: (x > 0) * 1.0 - (x < 0) * 1.0, (-3, 3)),
    "floor": (lambda x: np.array([math.floor(v) for v in x.flat], np.float64).reshape(x.shape), (-5, 5)),
    "erf": (_erf_series, (-2.5, 2.5)),
    "expm1": (_expm1_formula, (-3, 3)),
    "log1p": (_log1p_formula, (-0.9, 5)),
    "softplus": (lambda x: np.log(1.0 + np.exp(x)), (-10, 10)),
}
COVERED.update(UNARY)


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_float(name, shape, dtype):
    formula, (lo, hi) = UNARY[name]
    x = randn(shape, dtype, lo, hi)
    got, t = run_op(name, x)
    assert t == TensorType(shape, DType.from_numpy(dtype))
    close(got, formula(x.astype(np.float64)), dtype)


def test_unary_at_edges():
    x = np.array([-1000.0, -100.0, -0.0, 0.0, 100.0, 1000.0], np.float32)
    got, _ = run_op("sigmoid", x)
    with np.errstate(over="ignore"):
        close(got, 1.0 / (1.0 + np.exp(-x.astype(np.float64))))
    assert not np.isnan(got).any()
    got, _ = run_op("tanh", x)
    close(got, [-1.0, -1.0, 0.0, 0.0, 1.0, 1.0])
    got, _ = run_op("relu", x)
    close(got, [0.0, 0.0, 0.0, 0.0, 100.0, 1000.0])
    got, _ = run_op("log", np.array([0.0, 1.0, np.e], np.float64))
    close(got, [-np.inf, 0.0, 1.0], np.float64)
    got, _ = run_op("sqrt", np.array([-1.0, 4.0], np.float32))
    assert np.isnan(got[0]) and got[1] == 2.0
    got, _ = run_op("softplus", x)  # no overflow: log(1 + exp(1000)) = 1000
    close(got, [0.0, 0.0, np.log(2.0), np.log(2.0), 100.0, 1000.0])
    got, _ = run_op("erf", np.array([-np.inf, -10.0, 0.0, 10.0, np.inf, np.nan], np.float32))
    assert got[:5].tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0] and np.isnan(got[5])
    got, _ = run_op("expm1", np.array([-np.inf, -1e-10, 0.0, 1e-10], np.float64))
    close(got, [-1.0, -1e-10 + 5e-21, 0.0, 1e-10 + 5e-21], np.float64)
    got, _ = run_op("log1p", np.array([-1.0, 1e-10, 0.0], np.float64))
    close(got, [-np.inf, 1e-10 - 5e-21, 0.0], np.float64)
    got, _ = run_op("sign", np.array([-0.0, 0.0, np.nan, -np.inf, np.inf, -2.0], np.float32))
    assert got.tolist()[:2] == [0.0, 0.0] and np.isnan(got[2]) and got.tolist()[3:] == [-1.0, 1.0, -1.0]
    assert not np.signbit(got[0])  # sign(-0.0) is +0.0, as numpy
    got, _ = run_op("floor", np.array([-0.5, -1.0, 1.5, np.inf], np.float32))
    assert got.tolist() == [-1.0, -1.0, 1.0, np.inf]


INT_UNARY = {"abs": lambda v: v if v >= 0 else -v, "square": lambda v: v * v,
             "sign": lambda v: (v > 0) - (v < 0)}
COVERED.update(INT_UNARY)


@pytest.mark.parametrize("name", sorted(INT_UNARY))
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_int_unary(name, dtype):
    x = rng.integers(-50, 50, size=(7, 33)).astype(dtype)
    x[0, :3] = [0, -1, 1]
    got, t = run_op(name, x)
    assert t == TensorType((7, 33), DType.from_numpy(dtype)) and got.dtype == dtype
    assert got.tolist() == [[INT_UNARY[name](int(v)) for v in row] for row in x]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_neg_relu_on_ints(dtype):
    x = rng.integers(-50, 50, size=(7, 33)).astype(dtype)
    got, _ = run_op("neg", x)
    assert got.dtype == dtype and (got == np.array([[-int(v) for v in row] for row in x])).all()
    got, _ = run_op("relu", x)
    assert got.dtype == dtype and (got == np.array([[max(int(v), 0) for v in row] for row in x])).all()


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sigmoid", "tanh", "erf", "expm1", "log1p",
                                  "floor", "softplus"])
def test_float_only_unary_rejects_ints(name):
    g = Graph()
    x = g.add_input("x", TensorType((3,), DType.i32))
    with pytest.raises(OpTypeError, match=rf"{name}: expects a floating-point operand, got i32\[3\]"):
        g.op(name, x)


@pytest.mark.parametrize("name", ["neg", "relu", "abs", "square", "sign"])
def test_numeric_unary_rejects_bool(name):
    g = Graph()
    x = g.add_input("x", TensorType((3,), DType.bool))
    with pytest.raises(OpTypeError, match=rf"{name}: expects a numeric operand, got bool\[3\]"):
        g.op(name, x)


# -- binary -----------------------------------------------------------------------------------
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a * (1.0 / b),
    "maximum": lambda a, b: np.where(a >= b, a, b),
    "minimum": lambda a, b: np.where(a <= b, a, b),
    "pow": lambda a, b: np.exp(b * np.log(a)),  # a > 0 in the tests
}
COVERED.update(BINARY)

BROADCAST_PAIRS = [((7, 33), (7, 33), (7, 33)),
                   ((7, 33), (33,), (7, 33)),
                   ((1, 33), (7, 1), (7, 33)),
                   ((2, 7, 1), (7, 33), (2, 7, 33)),
                   ((1,), (7,), (7,)),
                   ((), (1, 7), (1, 7)),
                   ((1, 1), (1,), (1, 1))]


def _explicit_broadcast(a, shape):
    """Broadcast by index arithmetic, not numpy broadcasting."""
    a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    out = np.empty(shape, a.dtype)
    for idx in itertools.product(*map(range, shape)):
        out[idx] = a[tuple(0 if a.shape[k] == 1 else i for k, i in enumerate(idx))]
    return out


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("sa,sb,sout", BROADCAST_PAIRS)
def test_binary_float(name, sa, sb, sout):
    a, b = randn(sa), randn(sb)
    if name == "div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    if name == "pow":
        a = (np.abs(a) + 0.1).astype(np.float32)
    got, t = run_op(name, a, b)
    assert t == TensorType(sout, DType.f32)
    want = BINARY[name](_explicit_broadcast(a.astype(np.float64), sout),
                        _explicit_broadcast(b.astype(np.float64), sout))
    close(got, want)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "maximum", "minimum"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_binary_int(name, dtype):
    a = rng.integers(-100, 100, size=(7, 33)).astype(dtype)
    b = rng.integers(-100, 100, size=(33,)).astype(dtype)
    got, _ = run_op(name, a, b)
    want = BINARY[name](a.astype(np.int64), b.astype(np.int64)[None, :])
    assert got.dtype == dtype and (got == want).all()


def test_div_by_zero_gives_inf_and_nan():
    got, _ = run_op("div", np.array([1.0, -1.0, 0.0], np.float32), np.zeros(3, np.float32))
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2])


@pytest.mark.parametrize("name", ["div", "pow"])
def test_div_pow_reject_ints(name):
    g = Graph()
    a = g.add_input("a", TensorType((3,), DType.i32))
    with pytest.raises(OpTypeError, match=f"{name}: expects a floating-point operand"):
        g.op(name, a, a)


def test_pow_special_values():
    a = np.array([-8.0, 0.0, 0.0, 2.0, -2.0, np.inf], np.float64)
    b = np.array([1 / 3, 0.0, -1.0, 0.5, 2.0, -1.0], np.float64)
    got, _ = run_op("pow", a, b)
    assert np.isnan(got[0])  # negative base, non-integer exponent
    close(got[1:], [1.0, np.inf, 2 ** 0.5, 4.0, 0.0], np.float64)


def test_binary_symbolic_batch():
    g = Graph()
    x = g.add_input("x", TensorType(("N", 33)))
    b = g.add_input("b", TensorType((33,)))
    y = g.op("add", x, b)
    assert y.type == TensorType(("N", 33))
    g.set_outputs([y])
    for n in (1, 7):
        xv, bv = randn((n, 33)), randn((33,))
        close(kiln.interpret(g, xv, bv), xv.astype(np.float64) + bv.astype(np.float64)[None])


# -- cast -------------------------------------------------------------------------------------
@covers("cast")
@pytest.mark.parametrize("src,dst", [("f32", "f64"), ("f64", "f32"), ("f32", "i32"), ("f32", "i64"),
                                     ("i32", "f32"), ("i64", "i32"), ("f32", "bool"), ("bool", "f32"),
                                     ("bool", "i32"), ("f32", "f32")])
def test_cast(src, dst):
    sd, dd = DType.parse(src), DType.parse(dst)
    if sd is DType.bool:
        x = rng.integers(0, 2, size=(7, 33)).astype(bool)
    elif sd.is_float:
        x = randn((7, 33), sd.np, -50, 50)
        x[0, :3] = [0.0, -0.0, 2.5]
    else:
        x = rng.integers(-50, 50, size=(7, 33)).astype(sd.np)
    got, t = run_op("cast", x, dtype=dst)
    assert t == TensorType((7, 33), dd)
    assert got.dtype == dd.np
    flat = x.ravel().tolist()
    if dd is DType.bool:
        want = [v != 0 for v in flat]
    elif dd.is_float:
        want = [float(v) for v in flat]
    else:
        want = [int(v) for v in flat]  # Python int() truncates toward zero
    np.testing.assert_allclose(got.ravel().astype(np.float64), np.array(want, np.float64),
                               rtol=1e-7 if dd is DType.f32 or sd is DType.f32 else 0)


# -- matmul -----------------------------------------------------------------------------------
def _matmul_formula(a, b):
    # sum_k a[..., m, k] * b[..., k, p], batch dims broadcast explicitly.
    return (a[..., :, :, None] * b[..., None, :, :]).sum(axis=-2)


@covers("matmul")
@pytest.mark.parametrize("sa,sb,sout", [((7, 33), (33, 1), (7, 1)),
                                        ((1, 7), (7, 33), (1, 33)),
                                        ((1, 1), (1, 1), (1, 1)),
                                        ((2, 7, 33), (2, 33, 5), (2, 7, 5)),
                                        ((2, 7, 33), (33, 5), (2, 7, 5)),
                                        ((7, 3), (4, 3, 5), (4, 7, 5)),
                                        ((2, 1, 7, 3), (4, 3, 5), (2, 4, 7, 5)),
                                        ((1, 7, 3), (5, 3, 1), (5, 7, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul(sa, sb, sout, dtype):
    a, b = randn(sa, dtype), randn(sb, dtype)
    got, t = run_op("matmul", a, b)
    assert t == TensorType(sout, DType.from_numpy(dtype))
    close(got, _matmul_formula(a.astype(np.float64), b.astype(np.float64)), dtype)


def test_matmul_symbolic_batch():
    g = Graph()
    x = g.add_input("x", TensorType(("N", 7, 33)))
    w = g.add_input("w", TensorType((33, 5)))
    y = g.op("matmul", x, w)
    assert y.type == TensorType(("N", 7, 5))
    g.set_outputs([y])
    xv, wv = randn((1, 7, 33)), randn((33, 5))
    close(kiln.interpret(g, xv, wv), _matmul_formula(xv.astype(np.float64), wv.astype(np.float64)))


# -- reductions ---------------------------------------------------------------------------------
def _reduce_formula(x, axes, keepdims, fn):
    """Move the reduced axes last, flatten them, apply ``fn`` row by row in Python."""
    axes = sorted(a % x.ndim for a in axes)
    kept = [i for i in range(x.ndim) if i not in axes]
    rows = np.transpose(x, kept + axes).reshape([x.shape[i] for i in kept] + [-1])
    flat = rows.reshape(-1, rows.shape[-1])
    out = np.array([fn(list(r)) for r in flat], np.float64)
    if keepdims:
        return out.reshape([1 if i in axes else d for i, d in enumerate(x.shape)])
    return out.reshape([x.shape[i] for i in kept])


REDUCE = {"reduce_sum": lambda r: sum(r),
          "reduce_mean": lambda r: sum(r) / len(r),
          "reduce_max": lambda r: max(r),
          "reduce_min": lambda r: min(r)}
COVERED.update(REDUCE)
AXES = [(0,), (1,), (2,), (-1,), (0, 2), (2, 0), (1, 2), (-3, -1), (0, 1, 2)]


@pytest.mark.parametrize("name", sorted(REDUCE))
@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduce(name, axes, keepdims):
    x = randn((2, 7, 33))
    got, t = run_op(name, x, axes=list(axes), keepdims=keepdims)
    want = _reduce_formula(x.astype(np.float64), axes, keepdims, REDUCE[name])
    assert t.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32


@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduce_default_keepdims_and_batch_of_one(name):
    x = randn((1, 33))
    got, t = run_op(name, x, axes=[1])
    assert t == TensorType((1,))
    np.testing.assert_allclose(got, _reduce_formula(x.astype(np.float64), (1,), False, REDUCE[name]),
                               rtol=1e-5)


@pytest.mark.parametrize("name", ["reduce_sum", "reduce_max", "reduce_min"])
def test_reduce_ints(name):
    x = rng.integers(-100, 100, size=(7, 33)).astype(np.int32)
    got, _ = run_op(name, x, axes=[0])
    assert got.dtype == np.int32
    assert (got == _reduce_formula(x, (0,), False, REDUCE[name])).all()


def test_reduce_symbolic_batch():
    g = Graph()
    x = g.add_input("x", TensorType(("N", 7)))
    s = g.op("reduce_sum", x, axes=[1], keepdims=True)
    m = g.op("reduce_mean", x, axes=[0])
    assert s.type == TensorType(("N", 1)) and m.type == TensorType((7,))
    g.set_outputs([s, m])
    xv = randn((3, 7))
    gs, gm = kiln.interpret(g, xv)
    np.testing.assert_allclose(gs, _reduce_formula(xv.astype(np.float64), (1,), True, REDUCE["reduce_sum"]),
                               rtol=1e-5)
    np.testing.assert_allclose(gm, _reduce_formula(xv.astype(np.float64), (0,), False, REDUCE["reduce_mean"]),
                               rtol=1e-5)


# -- softmax ------------------------------------------------------------------------------------
def _softmax_formula(x, axis):
    # softmax_i = 1 / sum_j exp(x_j - x_i): no max subtraction, and still stable in float64
    # (an overflowing term gives 1/inf = 0, which is right).
    a = axis % x.ndim
    xi = np.expand_dims(x, a + 1)  # i along axis a
    xj = np.expand_dims(x, a)      # j along axis a + 1
    with np.errstate(over="ignore"):
        return 1.0 / np.sum(np.exp(xj - xi), axis=a + 1)


@covers("softmax")
@pytest.mark.parametrize("shape", [(7,), (1, 33), (7, 33), (2, 7, 33), (1, 1)])
@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_softmax_every_axis(shape, scale):
    x = randn(shape) * np.float32(scale)
    for axis in range(-len(shape), len(shape)):
        got, _ = run_op("softmax", x, axis=axis)
        want = _softmax_formula(x.astype(np.float64), axis)
        assert not np.isnan(got).any()
        close(got, want)
        np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-5)


def test_softmax_default_axis_is_last_and_large_values():
    x = np.array([[1000.0, 1000.0], [1000.0, 0.0], [-1000.0, -1000.0]], np.float32)
    got, _ = run_op("softmax", x)
    close(got, [[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]])
    got, _ = run_op("softmax", x, axis=0)
    close(got, _softmax_formula(x.astype(np.float64), 0))


# -- shape ops ------------------------------------------------------------------------------------
@covers("reshape")
@pytest.mark.parametrize("src,target,want", [((2, 7, 33), [14, 33], (14, 33)),
                                             ((2, 7, 33), [-1], (462,)),
                                             ((2, 7, 33), [33, -1], (33, 14)),
                                             ((2, 7, 33), [1, -1, 1], (1, 462, 1)),
                                             ((1, 33), [33], (33,)),
                                             ((7,), [7, 1], (7, 1)),
                                             ((1,), [], ())])
def test_reshape(src, target, want):
    x = randn(src)
    got, t = run_op("reshape", x, shape=target)
    assert t == TensorType(want)
    assert got.shape == want
    # row-major: the flat element sequence is unchanged
    assert got.ravel().tolist() == [float(v) for v in x.flat]


@pytest.mark.parametrize("target,want", [(["N", -1], ("N", 231)), (["N", 33, 7], ("N", 33, 7)),
                                         (["N", 7, 33, 1], ("N", 7, 33, 1))])
@pytest.mark.parametrize("n", [1, 3])
def test_reshape_symbolic(target, want, n):
    g = Graph()
    x = g.add_input("x", TensorType(("N", 7, 33)))
    y = g.op("reshape", x, shape=target)
    assert y.type == TensorType(want)
    g.set_outputs([y])
    xv = randn((n, 7, 33))
    got = kiln.interpret(g, xv)
    assert got.shape == tuple(n if d == "N" else d for d in want)
    assert got.ravel().tolist() == [float(v) for v in xv.flat]


@covers("transpose")
@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_transpose_rank3(perm):
    x = randn((2, 7, 33))
    got, t = run_op("transpose", x, perm=list(perm))
    assert t == TensorType(tuple((2, 7, 33)[p] for p in perm))
    for idx in [(0, 0, 0), (1, 6, 32), (1, 3, 17), (0, 5, 2)]:
        out_idx = tuple(idx[p] for p in perm)  # out[i0,i1,i2] = x[i_perm^-1 ...]
        assert got[out_idx] == x[idx]
    letters = "abc"
    np.testing.assert_array_equal(got, np.einsum(f"abc->{''.join(letters[p] for p in perm)}", x))


def test_transpose_rank2_and_symbolic():
    got, t = run_op("transpose", randn((1, 7)), perm=[1, 0])
    assert t == TensorType((7, 1))
    g = Graph()
    x = g.add_input("x", TensorType(("N", 7)))
    y = g.op("transpose", x, perm=[1, 0])
    assert y.type == TensorType((7, "N"))
    g.set_outputs([y])
    xv = randn((3, 7))
    got = kiln.interpret(g, xv)
    assert all(got[j, i] == xv[i, j] for i in range(3) for j in range(7))


# -- constant ---------------------------------------------------------------------------------------
@covers("constant")
@pytest.mark.parametrize("value,dtype", [(1.5, DType.f32), ([[1, -2], [3, 4]], DType.i32),
                                         (np.arange(33.0), DType.f64), ([True, False], DType.bool),
                                         ([2 ** 40], DType.i64), ([[np.inf, -np.inf]], DType.f32)])
def test_constant(value, dtype):
    g = Graph()
    c = g.constant(value, dtype)
    want = np.asarray(value)
    assert c.type == TensorType(want.shape, dtype)
    g.set_outputs([c])
    got = kiln.interpret(g)
    assert got.dtype == dtype.np and got.shape == want.shape
    assert got.tolist() == want.tolist()


def test_constant_attribute_is_frozen():
    g = Graph()
    src = np.array([1.0, 2.0], np.float32)
    c = g.op("constant", value=src)
    src[0] = 99.0  # the node owns a copy
    held = c.producer.attrs["value"]
    assert held[0] == 1.0
    with pytest.raises(ValueError):
        held[0] = 5.0


# -- type-inference errors --------------------------------------------------------------------
def _graph(*types):
    g = Graph()
    return g, [g.add_input(f"x{i}", t) for i, t in enumerate(types)]


F = lambda *s: TensorType(s, DType.f32)  # noqa: E731

ERRORS = [
    # (op, operand types, attrs, OpTypeError message pattern)
    ("add", [F(7, 33), F(7, 32)], {}, r"add: cannot broadcast f32\[7,33\], f32\[7,32\] \(dimension -1 is 33 vs 32\)"),
    ("mul", [F("N", 3), F(4, 3)], {}, r"mul: cannot broadcast f32\[N,3\], f32\[4,3\] \(dimension -2 is N vs 4\)"),
    ("maximum", [F(2, 7, 1), F(3, 1, 1)], {}, r"maximum: cannot broadcast .*dimension -3 is 2 vs 3"),
    ("matmul", [F(7, 33), F(32, 5)], {}, r"matmul: inner dimensions differ: f32\[7,33\] @ f32\[32,5\] \(33 vs 32\)"),
    ("matmul", [F(2, 7, 3), F(4, 3, 5)], {}, r"matmul: cannot broadcast f32\[2\], f32\[4\]"),
    ("matmul", [F(7), F(7, 3)], {}, r"matmul: expects operands of rank >= 2"),
    ("matmul", [TensorType((2, 2), DType.i32)] * 2, {}, r"matmul: expects floating-point operands"),
    ("add", [F(3), TensorType((3,), DType.f64)], {}, r"add: operand dtypes differ: f32\[3\], f64\[3\] \(insert a cast\)"),
    ("matmul", [F(3, 3), TensorType((3, 3), DType.f64)], {}, r"matmul: operand dtypes differ"),
    ("add", [TensorType((3,), DType.bool)] * 2, {}, r"add: expects numeric operands"),
    ("reduce_sum", [F(2, 7, 33)], {"axes": [3]}, r"reduce_sum: axis 3 is out of range for rank 3"),
    ("reduce_max", [F(2, 7, 33)], {"axes": [-4]}, r"reduce_max: axis -4 is out of range for rank 3"),
    ("reduce_sum", [F(2, 7)], {"axes": [1, -1]}, r"reduce_sum: repeated axis in \[1, -1\]"),
    ("reduce_sum", [F(2, 7)], {"axes": []}, r"reduce_sum: axes must not be empty"),
    ("reduce_mean", [TensorType((3,), DType.i32)], {"axes": [0]}, r"reduce_mean: expects a floating-point"),
    ("softmax", [F(7, 33)], {"axis": 2}, r"softmax: axis 2 is out of range for rank 2"),
    ("softmax", [F(7, 33)], {"axis": -3}, r"softmax: axis -3 is out of range for rank 2"),
    ("transpose", [F(2, 7, 33)], {"perm": [0, 0, 1]}, r"transpose: perm \[0, 0, 1\] is not a permutation of 0..2 for f32\[2,7,33\]"),
    ("transpose", [F(2, 7)], {"perm": [0, 1, 2]}, r"transpose: perm \[0, 1, 2\] is not a permutation of 0..1"),
    ("reshape", [F(2, 7, 33)], {"shape": [5, -1]}, r"reshape: cannot reshape f32\[2,7,33\] to \[5,-1\]"),
    ("reshape", [F(2, 7, 33)], {"shape": [14, 34]}, r"reshape: cannot reshape f32\[2,7,33\] to \[14,34\]"),
    ("reshape", [F(2, 7, 33)], {"shape": [-1, -1]}, r"reshape: at most one -1 in shape \[-1, -1\]"),
    ("reshape", [F("N", 7)], {"shape": [2, -1]}, r"reshape: cannot reshape f32\[N,7\] to \[2,-1\]"),
    ("reshape", [F("N", 7)], {"shape": ["M", 7]}, r"reshape: cannot reshape f32\[N,7\] to \[M,7\]"),
    ("reshape", [F(2, 7)], {"shape": [0, -1]}, r"reshape: cannot reshape"),
    ("softmax", [F(7)], {"axes": [0]}, r"softmax: unknown attribute\(s\) axes \(expected axis\)"),
    ("relu", [F(7)], {"alpha": 0.1}, r"relu: unknown attribute\(s\) alpha \(expected none\)"),
    ("reduce_sum", [F(7)], {}, r"reduce_sum: missing required attribute axes"),
    ("cast", [F(7)], {}, r"cast: missing required attribute dtype"),
    ("transpose", [F(7)], {}, r"transpose: missing required attribute perm"),
    ("reduce_sum", [F(7)], {"axes": [0], "keepdims": 1}, r"reduce_sum: attribute keepdims expects bool, got 1"),
    ("softmax", [F(7)], {"axis": 0.5}, r"softmax: attribute axis expects int, got 0.5"),
    ("cast", [F(7)], {"dtype": "f16"}, r"unknown dtype 'f16' \(expected one of f32, f64, i32, i64, bool\)"),
    ("reshape", [F(7)], {"shape": [7, -2]}, r"reshape: attribute shape expects shape"),
    ("add", [F(7)], {}, r"add: expects 2 operand\(s\), got 1"),
    ("add", [F(7)] * 3, {}, r"add: expects 2 operand\(s\), got 3"),
    ("relu", [F(7), F(7)], {}, r"relu: expects 1 operand\(s\), got 2"),
    ("constant", [F(7)], {"value": 1.0}, r"constant: expects 0 operand\(s\), got 1"),
    ("matmul", [F(7, 7)], {}, r"matmul: expects 2 operand\(s\), got 1"),
]


@pytest.mark.parametrize("op,types,attrs,msg", ERRORS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_type_errors(op, types, attrs, msg):
    g, ins = _graph(*types)
    with pytest.raises(ValueError, match=msg):
        g.op(op, *ins, **attrs)
    assert g.nodes == []  # a failed op leaves the graph unchanged


def test_unknown_op_and_non_value_operand():
    g, (x,) = _graph(F(3))
    with pytest.raises(OpTypeError, match=r"unknown op 'gelu'"):
        g.op("gelu", x)
    with pytest.raises(OpTypeError, match=r"add: operand 1 must be an IR Value, got ndarray"):
        g.op("add", x, np.ones(3, np.float32))
