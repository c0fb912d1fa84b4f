"""The ops Keras layers need (math, comparisons, data movement, conv, pooling) through
the LLVM backend against the reference interpreter.

As in test_llvm_ops.py: one small graph per case (operands with the batch dimension N
are graph inputs, the others parameters), compiled ONCE with no passes, run at
batch sizes 1 and 7. Here each operand names its own dtype and data kind.
"""
import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, TensorType

BATCHES = (1, 7)
rng = np.random.default_rng(4321)


def data(shape, dtype, kind="normal"):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.random(shape) > 0.5
    if kind.startswith("index:"):      # valid indices into an axis of that size
        return rng.integers(0, int(kind[6:]), shape).astype(dt)
    if kind == "small":                # few distinct values: ties and equal elements occur
        return rng.integers(-3, 3, shape).astype(dt)
    if dt.kind == "i":
        return rng.integers(-50, 50, shape).astype(dt)
    if kind == "positive":
        return (np.abs(rng.standard_normal(shape)) * 3 + 0.1).astype(dt)
    if kind == "gt-1":
        return rng.uniform(-0.95, 5, shape).astype(dt)
    return (rng.standard_normal(shape) * 3).astype(dt)


def opnd(shape, dtype="float32", kind="normal"):
    return (tuple(shape), dtype, kind)


def case(op, operands, **attrs):
    """operands: opnd(shape, dtype, kind) per operand, or bare shapes (f32, normal data)."""
    ops = [o if len(o) == 3 and isinstance(o[0], tuple) else opnd(o) for o in operands]
    return pytest.param(op, ops, attrs,
                        id=f"{op}-{'x'.join(f'{d[:1]}{d[-2:]}{list(s)}' for s, d, _ in ops)}-{attrs}")


F64, I32, I64, BOOL = "float64", "int32", "int64", "bool"
ACCUMULATING = {"conv2d", "conv2d_transpose", "avg_pool2d"}
UNARY = ["abs", "square", "sign", "floor", "erf", "expm1", "log1p", "softplus"]
COMPARE = ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"]
X4 = ("N", 7, 6, 3)   # a small NHWC batch

CASES = (
    [case(u, [opnd(("N", 7, 33), kind="gt-1" if u == "log1p" else "normal")]) for u in UNARY]
    + [case(u, [opnd(("N", 33), F64, "gt-1" if u == "log1p" else "normal")]) for u in UNARY]
    + [case(u, [opnd(("N", 33), dt)]) for u in ("abs", "square", "sign") for dt in (I32, I64)]
    + [case("pow", [opnd(("N", 33), kind="positive"), ("N", 33)]),
       case("pow", [opnd(("N", 7, 1), kind="positive"), (1, 33)]),
       case("pow", [opnd(("N", 33), F64, "positive"), opnd((33,), F64)])]
    + [case(c, [opnd(("N", 7, 33), kind="small"), opnd((33,), kind="small")]) for c in COMPARE]
    + [case(c, [opnd(("N", 33), dt, "small"), opnd(("N", 33), dt, "small")]) for c in COMPARE
       for dt in (I32, F64)]
    + [case(c, [opnd(("N", 33), BOOL), opnd((33,), BOOL)]) for c in ("equal", "not_equal")]
    + [case(c, [opnd(("N", 7, 33), BOOL), opnd((33,), BOOL)]) for c in ("logical_and", "logical_or")]
    + [case("logical_not", [opnd(("N", 33), BOOL)])]
    + [case("where", [opnd(("N", 7, 33), BOOL), ("N", 7, 33), (33,)]),
       case("where", [opnd((33,), BOOL), ("N", 1), ()]),
       case("where", [opnd(("N", 1), BOOL), opnd(("N", 33), I64), opnd((1,), I64)])]
    + [case("broadcast_to", [("N", 1, 33)], shape=("N", 7, 33)),
       case("broadcast_to", [("N", 1)], shape=("N", 5)),
       case("broadcast_to", [opnd(("N", 3), I32)], shape=(2, "N", 3))]
    + [case("concat", [("N", 3), ("N", 5)], axis=1),
       case("concat", [("N", 7, 2), ("N", 7, 1), ("N", 7, 3)], axis=-1),
       case("concat", [("N", 2, 3), ("N", 4, 3)], axis=1),
       case("concat", [opnd(("N", 2), BOOL), opnd(("N", 3), BOOL)], axis=1),
       case("concat", [opnd(("N", 2, 5), I32)], axis=2)]
    + [case("slice", [("N", 7, 33)], axes=a, begin=b, end=e, steps=s) for a, b, e, s in [
        ((1,), (2,), (5,), ()), ((2,), (-1,), (-34,), (-1,)), ((1, 2), (0, 3), (7, 30), (2, 4)),
        ((2,), (100,), (0,), (-3,)), ((1,), (3,), (3,), ())]]
    + [case("slice", [opnd(("N", 10), I64)], axes=(1,), begin=(1,), end=(9,), steps=(3,))]
    + [case("pad", [X4], pads=(0, 0, 1, 2, 0, 1, 0, 0), value=0.0),
       case("pad", [("N", 5)], pads=(0, 0, 3, 1), value=-1.5),
       case("pad", [opnd(("N", 2, 3), I32)], pads=(0, 0, 1, 1, 2, 0), value=7.0),
       case("pad", [("N", 4)], pads=(0, 0, 0, 0), value=1.0)]
    + [case("gather", [(10, 4), opnd(("N", 5), I32, "index:10")]),
       case("gather", [(10, 4), opnd(("N", 5), I64, "index:10")]),
       case("gather", [(3, 10, 2), opnd(("N",), I32, "index:10")], axis=1),
       case("gather", [("N", 10), opnd((4,), I64, "index:10")], axis=-1)]
    + [case("argmax", [opnd(("N", 7, 33), kind="small")], axis=a, keepdims=k)
       for a in (0, 1, 2) for k in (False, True)]
    + [case("argmax", [opnd(("N", 33), I32, "small")], axis=1),
       case("argmax", [opnd(("N", 1), F64)], axis=1)]
    + [case("reduce_min", [("N", 7, 33)], axes=a, keepdims=k) for a in [(1,), (0, 2), (0, 1, 2)]
       for k in (False, True)]
    + [case("reduce_min", [opnd(("N", 33), I32)], axes=(1,))]
    + [case("conv2d", [xs, ws], strides=s, dilations=d, pads=p, groups=g) for xs, ws, s, d, p, g in [
        (X4, (3, 3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0), 1),
        (X4, (3, 3, 3, 4), (1, 1), (1, 1), (1, 1, 1, 1), 1),
        (X4, (3, 2, 3, 5), (2, 2), (1, 1), (1, 1, 0, 1), 1),
        (X4, (3, 3, 3, 2), (1, 2), (2, 1), (2, 2, 1, 1), 1),
        (("N", 5, 5, 4), (3, 3, 2, 6), (1, 1), (1, 1), (1, 1, 1, 1), 2),
        (("N", 5, 5, 4), (3, 3, 1, 4), (1, 1), (1, 1), (1, 1, 1, 1), 4),      # depthwise
        (("N", 5, 5, 4), (3, 3, 1, 8), (2, 1), (1, 1), (0, 1, 1, 1), 4),      # depthwise x2
        (("N", 1, 9, 3), (1, 4, 3, 2), (1, 3), (1, 2), (0, 0, 3, 0), 1),      # Conv1D, causal
        (("N", 1, 1, 1), (1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1)]]
    + [case("conv2d", [opnd(X4, F64), opnd((3, 3, 3, 4), F64)], pads=(1, 1, 1, 1))]
    + [case("conv2d_transpose", [xs, ws], strides=s, dilations=d, pads=p, output_padding=op)
       for xs, ws, s, d, p, op in [
        (("N", 3, 3, 2), (3, 3, 4, 2), (1, 1), (1, 1), (0, 0, 0, 0), (0, 0)),
        (("N", 3, 4, 2), (3, 3, 3, 2), (2, 2), (1, 1), (0, 1, 0, 1), (0, 0)),
        (("N", 3, 3, 1), (2, 2, 2, 1), (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),
        (("N", 4, 3, 3), (3, 2, 2, 3), (2, 1), (2, 1), (1, 1, 0, 0), (1, 0)),
        (("N", 2, 2, 2), (3, 3, 2, 2), (1, 1), (1, 1), (2, 0, 1, 1), (0, 0))]]
    + [case(pool, [xs], window=w, strides=s, pads=p) for pool in ("max_pool2d", "avg_pool2d")
       for xs, w, s, p in [
        (X4, (2, 2), (2, 2), (0, 0, 0, 0)),
        (("N", 5, 5, 2), (2, 2), (2, 2), (0, 1, 0, 1)),
        (("N", 5, 7, 1), (3, 3), (1, 1), (1, 1, 1, 1)),
        (("N", 6, 5, 3), (3, 2), (2, 1), (1, 0, 0, 1)),
        (("N", 1, 7, 2), (1, 3), (1, 2), (0, 0, 1, 1))]]
    + [case("avg_pool2d", [opnd(X4, F64)], window=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))]
)


def build(op, operands, attrs):
    g = Graph("t")
    vals = []
    for i, (shape, dtype, kind) in enumerate(operands):
        t = TensorType(shape, DType.from_numpy(np.dtype(dtype)))
        if "N" in shape:
            vals.append(g.add_input(f"x{i}", t))
        else:
            vals.append(g.add_param(f"p{i}", data(shape, dtype, kind)))
    if not g.inputs:
        raise AssertionError("each case needs at least one batched operand")
    g.set_outputs([g.op(op, *vals, **attrs)])
    return g


@pytest.mark.parametrize("op,operands,attrs", CASES)
def test_op_matches_interpreter(op, operands, attrs):
    g = build(op, operands, attrs)
    exe = kiln.compile(g, passes=[])
    kinds = [k for s, d, k in operands if "N" in s]
    for n in BATCHES:
        xs = [data(v.type.concrete({"N": n}), v.type.dtype.np, k) for v, k in zip(g.inputs, kinds)]
        want = kiln.interpret(g, *xs)
        got = exe(*xs)
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype.kind == "f":
            eps = 2e-6 if want.dtype == np.float32 else 1e-12
            atol = eps
            if op in ACCUMULATING:  # summation order differs from the reference's
                eps *= 5
                atol = eps * max(1.0, float(np.abs(want).max(initial=0)))
            np.testing.assert_allclose(got, want, rtol=eps, atol=atol)
        else:
            np.testing.assert_array_equal(got, want)


def test_special_values_follow_numpy():
    g = Graph("s")
    x = g.add_input("x", TensorType(("N", 8)))
    y = g.add_input("y", TensorType(("N", 8)))
    outs = [g.op(u, x) for u in ("abs", "sign", "floor", "erf", "expm1", "log1p", "softplus")]
    outs += [g.op(c, x, y) for c in COMPARE] + [g.op("pow", x, y), g.op("argmax", x, axis=1),
                                                g.op("reduce_min", x, axes=(1,))]
    img = g.op("reshape", x, shape=("N", 2, 4, 1))
    outs += [g.op("max_pool2d", img, window=(2, 2), strides=(1, 1)),
             g.op("avg_pool2d", img, window=(2, 2), strides=(1, 1))]
    g.set_outputs(outs)
    xx = np.array([[np.nan, -np.inf, np.inf, -0.0, 0.0, -1000.0, 1000.0, -1.0],
                   [1.0, np.nan, 2.0, 2.0, -1e-30, 1e-30, -2.5, 1e38]], np.float32)
    yy = np.array([[1.0, -np.inf, np.inf, 0.0, -0.0, 2.0, np.nan, 0.5],
                   [np.nan, np.nan, 2.0, 3.0, 0.0, 1e-30, -2.5, -1e38]], np.float32)
    with np.errstate(all="ignore"):
        want = kiln.interpret(g, xx, yy)
    got = kiln.compile(g, passes=[])(xx, yy)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == b.dtype, k
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"output {k}")
    assert not np.signbit(got[1][0, 3])  # sign(-0.0) = +0.0


def test_gather_out_of_range_writes_zeros():
    # the reference raises; compiled code writes zeros for that row, never reads outside
    g = Graph("e")
    ids = g.add_input("ids", TensorType(("N", 4), DType.i64))
    emb = data((10, 3), "float32")
    g.set_outputs([g.op("gather", g.add_param("emb", emb), ids)])
    got = kiln.compile(g, passes=[])(np.array([[0, -1, 10, 9], [2 ** 40, -(2 ** 40), 3, 10 ** 6]], np.int64))
    zero = np.zeros(3, np.float32)
    want = np.stack([np.stack([emb[0], zero, zero, emb[9]]), np.stack([zero, zero, emb[3], zero])])
    np.testing.assert_array_equal(got, want)
