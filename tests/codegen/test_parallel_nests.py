"""Elementwise loop nests, fused loops, epilogues of out-fusable masters and softmax
split across the thread pool: large enough to be threaded, checked bit for bit against
the serial executable and against numpy formulas written here."""
import numpy as np
import pytest

import kiln
from kiln.codegen.llvm import emit
from kiln.codegen.llvm import kernels
from kiln.ir import Graph, TensorType

rng = np.random.default_rng(7)


def both(g):
    serial = kiln.compile(g, threads=1)
    threaded = kiln.compile(g, threads=2)
    return serial, threaded


def check(g, xs, want, rtol=1e-5, atol=1e-6):
    serial, threaded = both(g)
    for x, w in zip(xs, want):
        got = threaded(*x) if isinstance(x, tuple) else threaded(x)
        ref = serial(*x) if isinstance(x, tuple) else serial(x)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_allclose(got, w, rtol=rtol, atol=atol)


def test_thresholds_are_small_enough_to_thread_these_cases():
    assert 3 * 300 * 129 >= emit.NEST_MIN_WORK
    assert 2 * 4 * 33 * 130 >= kernels.SOFTMAX_MIN_WORK


def test_broadcast_add_relu_nest():
    g = Graph("b")
    x = g.add_input("x", TensorType(("N", 300, 129)))
    b = g.add_param("b", rng.standard_normal(129).astype(np.float32))
    g.set_outputs([g.op("relu", g.op("add", x, b))])
    bv = g.param_values["b"]
    xs = [rng.standard_normal((n, 300, 129)).astype(np.float32) for n in (1, 3, 8)]
    check(g, xs, [np.maximum(x + bv, 0) for x in xs])


def test_unfused_elementwise_and_transpose_with_static_outer_dim():
    g = Graph("t")
    x = g.add_input("x", TensorType(("N", 64, 600)))
    y = g.add_input("y", TensorType(("N", 64, 600)))
    g.set_outputs([g.op("transpose", g.op("mul", x, y), perm=(1, 0, 2))])
    xs = [(rng.standard_normal((n, 64, 600)).astype(np.float32),
           rng.standard_normal((n, 64, 600)).astype(np.float32)) for n in (1, 5)]
    serial, threaded = kiln.compile(g, threads=1, passes=[]), kiln.compile(g, threads=2, passes=[])
    for a, b in xs:
        np.testing.assert_array_equal(threaded(a, b), serial(a, b))
        np.testing.assert_array_equal(threaded(a, b), np.transpose(a * b, (1, 0, 2)))


def test_fused_loop_with_strided_slices():
    g = Graph("s")
    x = g.add_input("x", TensorType(("N", 200, 256)))
    lo = g.op("slice", x, axes=(2,), begin=(0,), end=(256,), steps=(2,))
    hi = g.op("slice", x, axes=(2,), begin=(1,), end=(256,), steps=(2,))
    g.set_outputs([g.op("tanh", g.op("add", g.op("mul", lo, hi), lo))])
    xs = [rng.standard_normal((n, 200, 256)).astype(np.float32) for n in (1, 4)]
    want = [np.tanh(x[..., 0::2] * x[..., 1::2] + x[..., 0::2]) for x in xs]
    check(g, xs, want, rtol=2e-6, atol=2e-6)


def test_pool_epilogue():
    g = Graph("p")
    x = g.add_input("x", TensorType(("N", 64, 64, 16)))
    s = g.add_param("s", rng.standard_normal(16).astype(np.float32))
    p = g.op("avg_pool2d", x, window=(2, 2), strides=(2, 2))
    g.set_outputs([g.op("sigmoid", g.op("mul", p, s))])
    sv = g.param_values["s"]
    xs = [rng.standard_normal((n, 64, 64, 16)).astype(np.float32) for n in (1, 6)]
    want = []
    for x in xs:
        pooled = x.reshape(len(x), 32, 2, 32, 2, 16).mean(axis=(2, 4))
        want.append(1 / (1 + np.exp(-(pooled * sv))))
    check(g, xs, want)


def softmax_ref(x, axis):
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_softmax_slices_across_threads(axis):
    g = Graph("sm")
    x = g.add_input("x", TensorType(("N", 4, 33, 130)))
    g.set_outputs([g.op("softmax", x, axis=axis)])
    xs = [rng.standard_normal((n, 4, 33, 130)).astype(np.float32) * 4 for n in (1, 2, 5)]
    xs[1][1, 2, 3, :] = np.nan            # one slice of NaN along the last axis
    xs[1][0, 1, 5, 7] = np.inf
    want = [softmax_ref(x.astype(np.float64), axis) for x in xs]
    serial, threaded = both(g)
    for x, w in zip(xs, want):
        got = threaded(x)
        np.testing.assert_array_equal(got, serial(x))
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("op,axes", [("reduce_sum", (2,)), ("reduce_mean", (1,)), ("reduce_max", (2,)),
                                     ("reduce_sum", (0,)), ("reduce_min", (1, 2))])
def test_reductions(op, axes):
    g = Graph("r")
    x = g.add_input("x", TensorType(("N", 300, 129)))
    g.set_outputs([g.op(op, x, axes=axes)])
    xs = [rng.standard_normal((n, 300, 129)).astype(np.float32) for n in (1, 4)]
    xs[1][2, 7, 9] = np.nan
    f = {"reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min}[op]
    check(g, xs, [f(x.astype(np.float64), axis=axes) for x in xs], rtol=1e-4, atol=1e-4)


def test_fused_prologue_reduction_like_layernorm_variance():
    g = Graph("v")
    x = g.add_input("x", TensorType(("N", 256, 128)))
    m = g.op("reduce_mean", x, axes=(2,), keepdims=True)
    d = g.op("sub", x, m)
    g.set_outputs([g.op("reduce_mean", g.op("mul", d, d), axes=(2,), keepdims=True)])
    xs = [rng.standard_normal((n, 256, 128)).astype(np.float32) for n in (1, 3)]
    check(g, xs, [x.astype(np.float64).var(axis=2, keepdims=True) for x in xs], rtol=1e-4, atol=1e-5)


def test_gather_rows_across_threads():
    from kiln.codegen.llvm import kernels_data
    g = Graph("e")
    table = g.add_param("table", rng.standard_normal((1000, 64)).astype(np.float32))
    ids = g.add_input("ids", TensorType(("N", 64), kiln.ir.DType.i32))
    g.set_outputs([g.op("gather", table, ids, axis=0)])
    assert 8 * 64 * 64 >= kernels_data.GATHER_MIN_WORK
    tv = g.param_values["table"]
    xs = [rng.integers(-3, 1003, (n, 64)).astype(np.int32) for n in (1, 8, 33)]
    want = []
    for x in xs:
        ok = (x >= 0) & (x < 1000)
        want.append(np.where(ok[..., None], tv[np.clip(x, 0, 999)], 0).astype(np.float32))
    check(g, xs, want, rtol=0, atol=0)
