"""The backward-pass ops (kiln/ir/ops/grad.py) through the LLVM backend against the
interpreter: one small graph per case, compiled once with no passes, run at batch
sizes 1 and 4; f32 and f64; ties and NaN for max pooling, repeated and out-of-range
indices for scatter_add."""
import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, TensorType

rng = np.random.default_rng(77)
COVERED = {"scatter_add", "conv2d_backprop_kernel", "max_pool2d_grad", "avg_pool2d_grad"}


def run(g, feeds):
    exe = kiln.compile(g, passes=[])
    for xs in feeds:
        want, got = kiln.interpret(g, *xs), exe(*xs)
        assert got.dtype == want.dtype and got.shape == want.shape
        tol = 2e-5 if want.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max(initial=0)))


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("idt", ["int32", "int64"])
@pytest.mark.parametrize("axis", [0, 1])
def test_scatter_add(dt, idt, axis):
    g = Graph("s")
    t = DType.from_numpy(dt)
    if axis == 0:      # embedding-style: indices [N,5] into 6 rows of 3
        u = g.add_input("u", TensorType(("N", 5, 3), t))
        i = g.add_input("i", TensorType(("N", 5), DType.from_numpy(idt)))
        shape = (6, 3)
    else:              # a batched table: [N,6,3] <- [N,4,3] at 4 static indices
        u = g.add_input("u", TensorType(("N", 4, 3), t))
        i = g.add_param("i", np.array([5, 0, 5, 2], idt))
        shape = ("N", 6, 3)
    g.set_outputs([g.op("scatter_add", u, i, axis=axis, shape=shape)])
    feeds = []
    for n in (1, 4):
        xs = [rng.standard_normal(u.type.concrete({"N": n})).astype(dt)]
        if axis == 0:
            xs.append(rng.integers(0, 6, (n, 5)).astype(idt))
        feeds.append(xs)
    run(g, feeds)


def test_scatter_add_skips_out_of_range_indices():
    g = Graph("s")
    u = g.add_input("u", TensorType(("N", 2), DType.f32))
    i = g.add_input("i", TensorType(("N",), DType.i64))
    g.set_outputs([g.op("scatter_add", u, i, axis=0, shape=(3, 2))])
    got = kiln.compile(g, passes=[])(np.ones((4, 2), np.float32), np.array([1, -1, 3, 1], np.int64))
    np.testing.assert_array_equal(got, [[0, 0], [2, 2], [0, 0]])


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("xs,dys,kernel,strides,dilations,pads,groups", [
    ((5, 5, 3), (3, 3, 4), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    ((6, 5, 4), (3, 6, 6), (3, 2), (2, 1), (1, 2), (1, 0, 2, 1), 2),
    ((4, 4, 3), (4, 4, 6), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 3)])       # depthwise x2
def test_conv2d_backprop_kernel(dt, xs, dys, kernel, strides, dilations, pads, groups):
    t = DType.from_numpy(dt)
    g = Graph("c")
    x = g.add_input("x", TensorType(("N",) + xs, t))
    dy = g.add_input("dy", TensorType(("N",) + dys, t))
    g.set_outputs([g.op("conv2d_backprop_kernel", x, dy, kernel=kernel, strides=strides,
                        dilations=dilations, pads=pads, groups=groups)])
    run(g, [[rng.standard_normal((n,) + s).astype(dt) for s in (xs, dys)] for n in (1, 4)])


POOLS = [((4, 4, 2), (2, 2), (2, 2), (0, 0, 0, 0)), ((5, 5, 3), (3, 3), (1, 2), (1, 1, 1, 0)),
         ((5, 4, 1), (2, 3), (1, 1), (1, 0, 0, 2))]


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("xs,window,strides,pads", POOLS)
def test_pool_grads(dt, xs, window, strides, pads):
    t = DType.from_numpy(dt)
    attrs = dict(window=window, strides=strides, pads=pads)
    probe = Graph("p")
    y_t = probe.op("max_pool2d", probe.add_input("x", TensorType(("N",) + xs, t)), **attrs).type
    g = Graph("m")
    x = g.add_input("x", TensorType(("N",) + xs, t))
    dy = g.add_input("dy", y_t)
    g.set_outputs([g.op("max_pool2d_grad", x, dy, **attrs),
                   g.op("avg_pool2d_grad", dy, size=xs[:2], **attrs)])
    exe = kiln.compile(g, passes=[])
    for n in (1, 4):
        xv = rng.integers(-2, 2, (n,) + xs).astype(dt)          # ties in most windows
        xv.flat[::7] = np.nan
        dyv = rng.standard_normal(y_t.concrete({"N": n})).astype(dt)
        for a, b in zip(exe(xv, dyv), kiln.interpret(g, xv, dyv)):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)
