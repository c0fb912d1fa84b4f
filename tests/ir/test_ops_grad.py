"""The ops backward passes need (kiln/ir/ops/grad.py) through the interpreter, against
explicit loops written here and adjoint identities with the forward ops; and their
type errors."""
import numpy as np
import pytest

from kiln.ir import DType, Graph, OpTypeError, TensorType

from .test_ops import run_op

rng = np.random.default_rng(31)
COVERED = {"scatter_add", "conv2d_backprop_kernel", "max_pool2d_grad", "avg_pool2d_grad"}
F = lambda *s: TensorType(s, DType.f64)  # noqa: E731


def close(got, want):
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,axis,idx_shape", [((6, 3), 0, (4,)), ((2, 5, 3), 1, (2, 3)), ((4, 5), -1, (7,))])
def test_scatter_add_accumulates_repeated_indices(shape, axis, idx_shape):
    ax = axis % len(shape)
    idx = rng.integers(0, shape[ax], idx_shape)
    idx[0] = idx[-1] if idx.ndim == 1 else idx[0]          # at least one repeat
    upd = rng.standard_normal(shape[:ax] + idx_shape + shape[ax + 1:])
    got, _ = run_op("scatter_add", upd, idx, axis=axis, shape=shape)
    want = np.zeros(shape)
    for t in np.ndindex(idx_shape):
        for o in np.ndindex(shape[:ax]):
            want[o + (idx[t],)] += upd[o + t]
    close(got, want)
    with pytest.raises(ValueError, match="out of range"):
        run_op("scatter_add", upd, np.full(idx_shape, shape[ax]), axis=axis, shape=shape)


def conv_kernel_grad_loops(x, dy, kernel, strides, dilations, pads, groups):
    kh, kw = kernel
    n, h, w, c = x.shape
    _, ho, wo, o = dy.shape
    cg, og = c // groups, o // groups
    dw = np.zeros((kh, kw, cg, o))
    for b, y, xx, i, j in np.ndindex(n, ho, wo, kh, kw):
        iy, ix = y * strides[0] + i * dilations[0] - pads[0], xx * strides[1] + j * dilations[1] - pads[2]
        if 0 <= iy < h and 0 <= ix < w:
            for oc in range(o):
                g = oc // og
                dw[i, j, :, oc] += x[b, iy, ix, g * cg:(g + 1) * cg] * dy[b, y, xx, oc]
    return dw


@pytest.mark.parametrize("xs,kernel,strides,dilations,pads,groups", [
    ((2, 5, 5, 3), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    ((1, 6, 5, 4), (3, 2), (2, 1), (1, 2), (1, 0, 2, 1), 2),
    ((2, 4, 4, 2), (2, 2), (1, 1), (1, 1), (1, 1, 1, 1), 2)])
def test_conv2d_backprop_kernel(xs, kernel, strides, dilations, pads, groups):
    x = rng.standard_normal(xs)
    out = 6
    w = rng.standard_normal(kernel + (xs[3] // groups, out))
    attrs = dict(strides=strides, dilations=dilations, pads=pads, groups=groups)
    y, yt = run_op("conv2d", x, w, **attrs)
    dy = rng.standard_normal(y.shape)
    dw, t = run_op("conv2d_backprop_kernel", x, dy, kernel=kernel, **attrs)
    assert t == F(*w.shape)
    close(dw, conv_kernel_grad_loops(x, dy, kernel, **attrs))
    np.testing.assert_allclose((y * dy).sum(), (w * dw).sum(), rtol=1e-12)   # the adjoint identity


def windows(h, w, window, strides, pads):
    """(oy, ox, [(y, x) covered, row-major])."""
    ho = (h + pads[0] + pads[1] - window[0]) // strides[0] + 1
    wo = (w + pads[2] + pads[3] - window[1]) // strides[1] + 1
    for oy, ox in np.ndindex(ho, wo):
        cells = [(oy * strides[0] + i - pads[0], ox * strides[1] + j - pads[2])
                 for i in range(window[0]) for j in range(window[1])]
        yield oy, ox, [(y, x) for y, x in cells if 0 <= y < h and 0 <= x < w]


POOLS = [((2, 4, 4, 2), (2, 2), (2, 2), (0, 0, 0, 0)), ((1, 5, 5, 3), (3, 3), (1, 2), (1, 1, 1, 0)),
         ((2, 5, 4, 1), (2, 3), (1, 1), (1, 0, 0, 2))]


@pytest.mark.parametrize("xs,window,strides,pads", POOLS)
def test_max_pool2d_grad_routes_to_the_first_maximum(xs, window, strides, pads):
    x = rng.integers(-2, 2, xs).astype(np.float64)          # many ties
    attrs = dict(window=window, strides=strides, pads=pads)
    y, _ = run_op("max_pool2d", x, **attrs)
    dy = rng.standard_normal(y.shape)
    got, t = run_op("max_pool2d_grad", x, dy, **attrs)
    assert t == F(*xs)
    want = np.zeros(xs)
    for oy, ox, cells in windows(xs[1], xs[2], window, strides, pads):
        for n, c in np.ndindex(xs[0], xs[3]):
            vals = [x[n, yy, xx, c] for yy, xx in cells]
            yy, xx = cells[int(np.argmax(vals))]
            want[n, yy, xx, c] += dy[n, oy, ox, c]
    close(got, want)


def test_max_pool2d_grad_nan_and_minus_inf():
    x = np.array([[-np.inf, -np.inf], [np.nan, np.nan]]).reshape(1, 2, 2, 1)
    got, _ = run_op("max_pool2d_grad", x, np.array([3.0]).reshape(1, 1, 1, 1), window=(2, 2), strides=(1, 1))
    np.testing.assert_array_equal(got.reshape(2, 2), [[0, 0], [3, 0]])
    got, _ = run_op("max_pool2d_grad", x[:, :1], np.array([3.0, 4.0]).reshape(1, 1, 2, 1), window=(1, 2),
                    strides=(1, 1), pads=(0, 0, 1, 0))
    np.testing.assert_array_equal(got.reshape(2), [7, 0])   # all -inf: the first real element


@pytest.mark.parametrize("xs,window,strides,pads", POOLS)
def test_avg_pool2d_grad(xs, window, strides, pads):
    attrs = dict(window=window, strides=strides, pads=pads)
    x = rng.standard_normal(xs)
    y, _ = run_op("avg_pool2d", x, **attrs)
    dy = rng.standard_normal(y.shape)
    got, t = run_op("avg_pool2d_grad", dy, size=xs[1:3], **attrs)
    assert t == F(*xs)
    want = np.zeros(xs)
    for oy, ox, cells in windows(xs[1], xs[2], window, strides, pads):
        for yy, xx in cells:
            want[:, yy, xx, :] += dy[:, oy, ox, :] / len(cells)
    close(got, want)
    np.testing.assert_allclose((y * dy).sum(), (x * got).sum(), rtol=1e-12)


def test_symbolic_batch_types():
    g = Graph("t")
    upd = g.add_input("u", F("N", 4, 3))
    idx = g.add_param("i", np.array([0, 2, 2, 1]))
    assert g.op("scatter_add", upd, idx, axis=1, shape=("N", 5, 3)).type == F("N", 5, 3)
    x, dy = g.add_input("x", F("N", 5, 5, 2)), g.add_input("dy", F("N", 3, 3, 4))
    assert g.op("conv2d_backprop_kernel", x, dy, kernel=(3, 3)).type == F(3, 3, 2, 4)
    p = g.add_input("p", F("N", 2, 2, 2))
    assert g.op("max_pool2d_grad", x, p, window=(2, 2), strides=(2, 2)).type == x.type
    assert g.op("avg_pool2d_grad", p, window=(2, 2), strides=(2, 2), size=(5, 5)).type == x.type


@pytest.mark.parametrize("op,types,attrs,msg", [
    ("scatter_add", [F(4, 3), TensorType((4,), DType.f32)], dict(axis=0, shape=(5, 3)), "indices must be i32 or i64"),
    ("scatter_add", [F(4, 3), TensorType((4,), DType.i32)], dict(axis=0, shape=(5, 2)), r"must have shape \[4,2\]"),
    ("scatter_add", [F(4, 3), TensorType((4,), DType.i32)], dict(axis=0, shape=(-1, 3)), "explicit"),
    ("conv2d_backprop_kernel", [F(1, 5, 5, 2), F(1, 4, 4, 3)], dict(kernel=(3, 3)), "does not match conv2d's output"),
    ("conv2d_backprop_kernel", [F(1, 5, 5, 2), F(1, 3, 3, 3)], dict(kernel=(3, 3), groups=2), "groups=2 must divide"),
    ("max_pool2d_grad", [F(1, 4, 4, 2), F(1, 3, 3, 2)], dict(window=(2, 2), strides=(2, 2)), "does not match max_pool2d"),
    ("avg_pool2d_grad", [F(1, 2, 2, 2)], dict(window=(2, 2), strides=(2, 2), size=(6, 6)), "does not match avg_pool2d"),
])
def test_type_errors(op, types, attrs, msg):
    g = Graph("e")
    ins = [g.add_input(f"x{i}", t) for i, t in enumerate(types)]
    with pytest.raises(OpTypeError, match=msg):
        g.op(op, *ins, **attrs)
