"""Every op through the LLVM backend against the reference interpreter.

Each case builds a small graph (operands with the symbolic batch dimension N are
graph inputs, the others parameters), compiles it ONCE with no passes (so the op
itself is lowered), and runs it at several batch sizes, including 1.
"""
import numpy as np
import pytest

import kiln
from kiln.ir import OPS, DType, Graph, TensorType

BATCHES = (1, 7, 33)
rng = np.random.default_rng(1234)


def data(shape, dtype, positive=False):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.random(shape) > 0.5
    if dt.kind == "i":
        return rng.integers(-50, 50, shape).astype(dt)
    x = rng.standard_normal(shape) * 3
    if positive:
        x = np.abs(x) + 0.1
    return x.astype(dt)


def case(op, operands, dtype="float32", positive=False, **attrs):
    """operands: shapes (tuples; 'N' marks the batch dim) of each operand."""
    return pytest.param(op, operands, dtype, positive, attrs,
                        id=f"{op}-{'x'.join(str(list(s)) for s in operands)}-{dtype}-{attrs}")


ACCUMULATING = {"matmul", "reduce_sum", "reduce_mean", "softmax"}
UNARY = ["neg", "exp", "log", "sqrt", "relu", "sigmoid", "tanh"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]
CASES = (
    [case(u, [s], positive=u in ("log", "sqrt")) for u in UNARY
     for s in [("N", 1), ("N", 7), ("N", 33), ("N", 7, 33)]]
    + [case(u, [("N", 33)], dtype="float64", positive=u in ("log", "sqrt")) for u in UNARY]
    + [case(u, [("N", 7)], dtype="int32") for u in ("neg", "relu")]
    + [case(b, s) for b in BINARY for s in [
        [("N", 33), ("N", 33)], [("N", 33), (33,)], [("N", 7, 1), (1, 33)], [("N", 1), ("N", 7)],
        [("N", 7), ()], [(7,), ("N", 1)]]]
    + [case(b, [("N", 33), (33,)], dtype=dt) for b in ("add", "sub", "mul", "maximum", "minimum")
       for dt in ("float64", "int32", "int64")]
    + [case("cast", [("N", 33)], dtype=src, dtype_attr=dst) for src, dst in [
        ("float32", "i32"), ("float32", "f64"), ("int32", "f32"), ("float32", "bool"),
        ("bool", "f32"), ("int64", "i32"), ("float64", "f32")]]
    + [case("matmul", s) for s in [
        [("N", 7), (7, 33)], [("N", 33), (33, 1)], [("N", 1), (1, 7)], [("N", 7, 33), (33, 7)],
        [("N", 7, 33), ("N", 33, 5)], [(1, 7, 33), ("N", 33, 5)]]]
    + [case("matmul", [("N", 7), (7, 33)], dtype="float64")]
    + [case(r, [("N", 7, 33)], axes=ax, keepdims=kd) for r in ("reduce_sum", "reduce_mean", "reduce_max")
       for ax in [(1,), (2,), (0,), (1, 2), (0, 2), (0, 1, 2), (-1,)] for kd in (False, True)]
    + [case(r, [("N", 33)], dtype="int32", axes=(1,)) for r in ("reduce_sum", "reduce_max")]
    + [case("softmax", [s], axis=a) for s, a in [
        (("N", 33), -1), (("N", 1), -1), (("N", 7, 33), 1), (("N", 7, 33), 0), (("N", 7, 33), -1)]]
    + [case("reshape", [("N", 7, 33)], shape=s) for s in [("N", -1), ("N", 33, 7), ("N", -1, 3), ("N", 1, 231), (-1, 33, 7), (231, -1)]]
    + [case("transpose", [("N", 7, 33)], perm=p) for p in [(0, 2, 1), (2, 0, 1), (1, 0, 2), (0, 1, 2)]]
    + [case("transpose", [("N", 33)], perm=(1, 0))]
)


def build(op, operands, dtype, positive, attrs):
    g = Graph("t")
    vals = []
    for i, shape in enumerate(operands):
        t = TensorType(shape, DType.from_numpy(np.dtype(dtype)))
        if "N" in shape:
            vals.append(g.add_input(f"x{i}", t))
        else:
            vals.append(g.add_param(f"p{i}", data(shape, dtype, positive)))
    if not g.inputs:
        raise AssertionError("each case needs at least one batched operand")
    if "dtype_attr" in attrs:
        attrs = {"dtype": attrs["dtype_attr"]}
    g.set_outputs([g.op(op, *vals, **attrs)])
    return g


@pytest.mark.parametrize("op,operands,dtype,positive,attrs", CASES)
def test_op_matches_interpreter(op, operands, dtype, positive, attrs):
    g = build(op, operands, dtype, positive, attrs)
    exe = kiln.compile(g, passes=[])
    for n in BATCHES:
        xs = [data(v.type.concrete({"N": n}), dtype, positive) for v in g.inputs]
        want = kiln.interpret(g, *xs)
        got = exe(*xs)
        assert got.shape == want.shape and got.dtype == want.dtype
        if np.dtype(dtype).kind == "f" and op not in ("cast",):
            eps = 2e-6 if dtype == "float32" else 1e-12
            if op in ACCUMULATING:  # summation order differs from numpy's: scale by magnitude
                eps *= 5
                atol = eps * max(1.0, float(np.abs(want).max(initial=0)))
            else:
                atol = eps
            np.testing.assert_allclose(got, want, rtol=eps, atol=atol)
        else:
            np.testing.assert_array_equal(got, want)


def test_constant_operand_and_reshape_alias_into_kernel():
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", 7, 33)))
    c = g.constant(np.linspace(-1, 1, 231, dtype=np.float32))
    r = g.op("reshape", x, shape=("N", -1))
    y = g.op("relu", g.op("add", r, c))
    g.set_outputs([y, r])  # r is an alias of the input: copied out
    exe = kiln.compile(g, passes=[])
    xx = data((5, 7, 33), "float32")
    y_got, r_got = exe(xx)
    np.testing.assert_array_equal(r_got, xx.reshape(5, -1))
    np.testing.assert_allclose(y_got, np.maximum(xx.reshape(5, -1) + np.linspace(-1, 1, 231,
                               dtype=np.float32), 0), rtol=1e-6)


def test_same_value_returned_twice_and_input_returned():
    g = Graph("d")
    x = g.add_input("x", TensorType(("N", 3)))
    y = g.op("exp", x)
    g.set_outputs([y, y, x])
    a, b, c = kiln.compile(g, passes=[])(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(a, np.e * np.ones((2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, np.ones((2, 3)))


def test_special_values_follow_numpy():
    g = Graph("s")
    x = g.add_input("x", TensorType(("N", 6)))
    g.set_outputs([g.op("relu", x), g.op("sigmoid", x), g.op("tanh", x),
                   g.op("reduce_max", x, axes=(1,)), g.op("softmax", x)])
    xx = np.array([[np.nan, -np.inf, np.inf, -100.0, 100.0, 0.0],
                   [1000.0, 999.0, -1000.0, 0.0, 1.0, 2.0]], np.float32)
    got = kiln.compile(g, passes=[])(xx)
    want = kiln.interpret(g, xx)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_every_op_has_a_codegen_case():
    from .test_gemm import COVERED as GEMM
    from .test_llvm_ops_grad import COVERED as GRAD
    from .test_llvm_ops_layers import CASES as LAYER_CASES
    covered = ({p.values[0] for p in CASES} | {p.values[0] for p in LAYER_CASES}
               | {"constant", "fusion", "scan"} | GEMM | GRAD  # fusion: tests/passes/test_fusion.py,
               | {"random_uniform"} | {"attention", "attention_packed"} | {"conv2d_winograd"}
               | {"lstm_cell_packed", "lstm_project"})
    # scan: tests/codegen/test_scan.py; random_uniform: tests/training/test_random.py
    # (kernel == reference, bit for bit); attention, attention_packed: test_attention.py;
    # conv2d_winograd: test_winograd.py; lstm_cell_packed, lstm_project: test_lstm_cell.py
    assert covered == set(OPS), f"ops without a codegen test: {set(OPS) - covered}"
