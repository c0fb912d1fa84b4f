"""The fast CPU kernels of a CNN's training step against the ops' numpy references:
conv2d_backprop_kernel as a register-blocked GEMM (kernels_convgrad.py),
conv2d_transpose in gather form (kernels_convt.py), max/avg pooling and max pooling's
gradient vectorized over channels (kernels_pool.py). Each graph has a symbolic batch
and runs at batch 1 and 7 (and one batch above the GEMM's slab count), with 1 and 2
threads; the "big" cases are large enough for the kernels to split across threads."""
import numpy as np
import pytest

import kiln
from kiln.codegen.llvm import kernels_convgrad
from kiln.ir import DType, Graph, TensorType
from kiln.ir.ops.nn import conv2d_input_grad

F32 = DType.f32
rng = np.random.default_rng(9)


def check(g, shapes, threads, batches=(1, 7), dtype=np.float32, tol=2e-5, prep=None):
    exe = kiln.compile(g, passes=[], threads=threads, cache=False)
    for n in batches:
        xs = [rng.standard_normal((n,) + s).astype(dtype) for s in shapes]
        if prep is not None:
            xs = prep(xs)
        want, got = kiln.interpret(g, *xs), exe(*xs)
        want, got = (want, got) if isinstance(want, (list, tuple)) else ([want], [got])
        for w, a in zip(want, got):
            assert a.shape == w.shape and a.dtype == w.dtype
            np.testing.assert_allclose(a, w, rtol=tol, atol=tol * max(1.0, np.abs(w).max(initial=0)))


def conv_out(hw, k, s, d, pads):
    return tuple((hw[a] + pads[2 * a] + pads[2 * a + 1] - d[a] * (k[a] - 1) - 1) // s[a] + 1
                 for a in range(2))


# (x [H,W,C], O, kernel, strides, dilations, pads)
CONVS = [
    ((13, 13, 32), 64, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)),      # the CNN's c2
    ((7, 9, 5), 10, (3, 2), (1, 1), (1, 1), (0, 0, 0, 0)),        # odd sizes, O < 16
    ((9, 8, 3), 70, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),        # stride 2, 'same'-like pads
    ((10, 11, 13), 33, (3, 3), (1, 2), (2, 1), (2, 1, 0, 3)),     # dilation, uneven pads
    ((6, 6, 1), 32, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)),        # one input channel
    ((8, 8, 7), 6, (1, 1), (2, 2), (1, 1), (0, 0, 0, 0)),         # 1x1, strided
    ((5, 5, 20), 48, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),       # kernel as large as the image
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xs,o,k,s,d,pads", CONVS)
def test_conv2d_backprop_kernel_gemm(xs, o, k, s, d, pads, threads):
    g = Graph("bk")
    x = g.add_input("x", TensorType(("N",) + xs, F32))
    dy_s = conv_out(xs[:2], k, s, d, pads) + (o,)
    dy = g.add_input("dy", TensorType(("N",) + dy_s, F32))
    out = g.op("conv2d_backprop_kernel", x, dy, kernel=k, strides=s, dilations=d, pads=pads, groups=1)
    g.set_outputs([out])
    assert kernels_convgrad.eligible(out.producer)
    check(g, [xs, dy_s], threads, batches=(1, 7, kernels_convgrad.SLABS + 3), tol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_backprop_kernel_gemm_big(threads):
    g = Graph("bk")
    x = g.add_input("x", TensorType(("N", 16, 16, 24), F32))
    dy = g.add_input("dy", TensorType(("N", 14, 14, 40), F32))
    g.set_outputs([g.op("conv2d_backprop_kernel", x, dy, kernel=(3, 3), groups=1)])
    check(g, [(16, 16, 24), (14, 14, 40)], threads, batches=(3, 12), tol=1e-4)


def test_grouped_backprop_kernel_keeps_the_direct_kernel():
    g = Graph("bk")
    x = g.add_input("x", TensorType(("N", 6, 6, 4), F32))
    dy = g.add_input("dy", TensorType(("N", 4, 4, 6), F32))
    out = g.op("conv2d_backprop_kernel", x, dy, kernel=(3, 3), groups=2)
    g.set_outputs([out])
    assert not kernels_convgrad.eligible(out.producer)
    check(g, [(6, 6, 4), (4, 4, 6)], 1, tol=1e-4)


# conv2d_transpose as conv2d's input gradient: (x of the conv [H,W,C], O, kernel, strides, dilations, pads)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xs,o,k,s,d,pads", CONVS)
def test_conv2d_transpose_gather(xs, o, k, s, d, pads, threads):
    g = Graph("tr")
    dy_s = conv_out(xs[:2], k, s, d, pads) + (o,)
    dy = g.add_input("dy", TensorType(("N",) + dy_s, F32))
    w = g.add_input("w", TensorType(k + (xs[2], o), F32))
    g.set_outputs([conv2d_input_grad(g, dy, w, xs[:2], strides=s, dilations=d, pads=pads, groups=1)])
    check(g, [dy_s, k + (xs[2], o)], threads,
          prep=lambda v: [v[0], v[1][0]], tol=1e-4)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_transpose_gather_keras_layouts(dt, threads):
    """Keras-style Conv2DTranspose: 'same' crop, output_padding, C not a power of two."""
    t = DType.from_numpy(np.dtype(dt).name)
    g = Graph("tr")
    x = g.add_input("x", TensorType(("N", 5, 6, 12), t))
    w = g.add_input("w", TensorType((3, 3, 9, 12), t))
    g.set_outputs([g.op("conv2d_transpose", x, w, strides=(2, 2), pads=(1, 1, 1, 0),
                        output_padding=(1, 0)),
                   g.op("conv2d_transpose", x, w, strides=(1, 3), dilations=(2, 1))])
    check(g, [(5, 6, 12), (3, 3, 9, 12)], threads, dtype=dt, prep=lambda v: [v[0], v[1][0]],
          tol=1e-4 if dt is np.float32 else 1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_transpose_gather_big(threads):
    g = Graph("tr")
    x = g.add_input("x", TensorType(("N", 11, 11, 64), F32))
    w = g.add_input("w", TensorType((3, 3, 32, 64), F32))
    g.set_outputs([g.op("conv2d_transpose", x, w)])
    check(g, [(11, 11, 64), (3, 3, 32, 64)], threads, batches=(5,), prep=lambda v: [v[0], v[1][0]],
          tol=1e-4)


# (x [H,W,C], window, strides, pads)
POOLS = [
    ((26, 26, 32), (2, 2), (2, 2), (0, 0, 0, 0)),     # the CNN's pool
    ((11, 11, 64), (2, 2), (2, 2), (0, 0, 0, 0)),     # odd: last row and column uncovered
    ((9, 10, 37), (2, 3), (3, 4), (0, 0, 1, 0)),      # gaps between windows, C % 16 != 0
    ((7, 7, 5), (3, 3), (2, 2), (1, 1, 1, 1)),        # overlapping, padded
    ((6, 5, 3), (3, 2), (1, 1), (0, 2, 1, 0)),        # stride 1
    ((40, 40, 48), (2, 2), (2, 2), (0, 0, 0, 0)),     # big enough for the thread pool
    ((40, 40, 48), (3, 3), (2, 2), (1, 1, 1, 1)),
]


def with_ties_and_nans(xs):
    x = np.round(xs[0]).astype(xs[0].dtype)   # ties in most windows
    x.flat[::7] = np.nan
    x.flat[3::11] = -np.inf
    return [x] + xs[1:]


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xs,window,strides,pads", POOLS)
def test_pooling_and_max_pool_grad(xs, window, strides, pads, threads, dt):
    t = DType.from_numpy(np.dtype(dt).name)
    attrs = dict(window=window, strides=strides, pads=pads)
    g = Graph("p")
    x = g.add_input("x", TensorType(("N",) + xs, t))
    y_t = g.op("max_pool2d", x, **attrs)
    dy = g.add_input("dy", y_t.type)
    g.set_outputs([y_t, g.op("avg_pool2d", x, **attrs), g.op("max_pool2d_grad", x, dy, **attrs)])
    ys = y_t.type.shape[1:]
    check(g, [xs, ys], threads, dtype=dt, prep=with_ties_and_nans, tol=1e-6)


@pytest.mark.parametrize("cpu", ["x86-64-v3", "generic"])
def test_narrower_vector_targets(cpu):
    """AVX2 (8 lanes, 16 registers: smaller tiles) and SSE (4 lanes, no FMA)."""
    from kiln import target as targets
    with targets.using(cpu):
        g = Graph("t")
        x = g.add_input("x", TensorType(("N", 9, 10, 21), F32))
        dy = g.add_input("dy", TensorType(("N", 7, 8, 70), F32))
        w = g.add_input("w", TensorType((3, 3, 21, 70), F32))
        y = g.op("max_pool2d", x, window=(2, 2), strides=(2, 2))
        g.set_outputs([g.op("conv2d_backprop_kernel", x, dy, kernel=(3, 3)),
                       g.op("conv2d_backprop_kernel", x, x, kernel=(3, 3), pads=(1, 1, 1, 1)),
                       conv2d_input_grad(g, dy, w, (9, 10), strides=(1, 1), dilations=(1, 1),
                                         pads=(0, 0, 0, 0), groups=1),
                       y, g.op("max_pool2d_grad", x, y, window=(2, 2), strides=(2, 2))])
        check(g, [(9, 10, 21), (7, 8, 70), (3, 3, 21, 70)], 2, batches=(1, 5, 12),
              prep=lambda v: [v[0], v[1], v[2][0]], tol=1e-4)
