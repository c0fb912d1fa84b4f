"""The depthwise conv2d kernel (groups == channels, kernels_dwconv.py), and the direct
kernel that runs other grouped convs (kernels_nn.py, rows split across the pool),
against numpy convolutions written here. Depthwise: channel counts that fill whole vectors, leave a
tail, or are below one vector; strides, dilations, asymmetric and 'same' padding
(edge columns with checks, whole tap rows outside the image), windows from 1x1 to 7x7,
batch 1 and more, one and two threads, alone and with a fused bias + relu6 epilogue."""
import numpy as np
import pytest

import kiln
from kiln.codegen.llvm.kernels_dwconv import interior
from kiln.ir import Graph, TensorType

from .test_conv_paths import conv_ref, conv_windows

rng = np.random.default_rng(5)


def depthwise_ref(x, w, strides, dil, pads):
    """out[n, y, x, c] = sum_{i, j} xpad[n, y*sh + i*dh, x*sw + j*dw, c] * w[i, j, 0, c]."""
    return sum(win * w[i, j, 0].astype(np.float64) for i, j, win in conv_windows(x, w.shape[:2], strides, dil, pads))


def build(hw, c, k, strides, dil, pads, epilogue):
    g = Graph("dw")
    x = g.add_input("x", TensorType(("N", *hw, c)))
    w = rng.standard_normal((*k, 1, c)).astype(np.float32)
    y = g.op("conv2d", x, g.add_param("w", w), strides=strides, dilations=dil, pads=pads, groups=c)
    b = rng.standard_normal(c).astype(np.float32)
    if epilogue:
        y = g.op("minimum", g.op("relu", g.op("add", y, g.add_param("b", b))), g.constant(np.float32(6)))
    g.set_outputs([y])
    return g, w, b


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hw,c,k,strides,dil,pads,epilogue", [
    ((16, 16), 32, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), True),      # MobileNet block
    ((15, 17), 48, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1), True),      # 'same', stride 2, odd
    ((9, 11), 19, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), False),      # a channel tail
    ((8, 7), 5, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), True),         # fewer channels than a vector
    ((12, 10), 24, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2), False),     # dilated
    ((7, 9), 16, (3, 2), (2, 1), (1, 1), (2, 0, 1, 0), False),       # asymmetric
    ((6, 6), 40, (7, 7), (1, 1), (1, 1), (3, 3, 3, 3), True),        # 7x7, windows mostly padding
    ((5, 4), 33, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), False),       # 1x1
    ((4, 4), 16, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), True),        # 'valid': no edge columns
])
def test_depthwise_matches_numpy(hw, c, k, strides, dil, pads, epilogue, threads):
    g, w, b = build(hw, c, k, strides, dil, pads, epilogue)
    exe = kiln.compile(g, threads=threads, cache=False)
    if epilogue:
        assert exe.ir.count("= fusion(") == 1
    for n in (1, 3):
        x = rng.standard_normal((n, *hw, c)).astype(np.float32)
        want = depthwise_ref(x, w, strides, dil, pads)
        if epilogue:
            want = np.minimum(np.maximum(want + b, 0), 6)
        np.testing.assert_allclose(exe(x), want, rtol=1e-5, atol=1e-5 * k[0] * k[1])


def test_padding_is_skipped_not_multiplied():
    """A tap outside the image contributes nothing, even where the image holds inf (a
    zero weight times a clamped inf would be NaN)."""
    g, w, _ = build((6, 6), 16, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), False)
    x = rng.standard_normal((2, 6, 6, 16)).astype(np.float32)
    x[:, 0, :, 3] = np.inf          # the first row: only windows that cover it see it
    got = kiln.compile(g, cache=False)(x)
    want = depthwise_ref(np.where(np.isinf(x), 0, x), w, (1, 1), (1, 1), (1, 1, 1, 1))
    covered = np.zeros(got.shape, bool)
    covered[:, :2, :, 3] = True     # output rows 0 and 1 read input row 0
    assert np.all(np.isinf(got[covered]) | np.isnan(got[covered]))
    np.testing.assert_allclose(got[~covered], want[~covered], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size,out,k,stride,dil,pad", [
    (16, 16, 3, 1, 1, 1), (15, 8, 3, 2, 1, 0), (6, 6, 7, 1, 1, 3), (4, 2, 3, 1, 1, 0), (12, 12, 3, 1, 2, 2)])
def test_interior_columns(size, out, k, stride, dil, pad):
    lo, hi = interior(size, out, k, stride, dil, pad)
    inside = [all(0 <= o * stride - pad + j * dil < size for j in range(k)) for o in range(out)]
    assert [lo <= o < hi for o in range(out)] == inside


@pytest.mark.parametrize("epilogue", [False, True])
def test_depthwise_kernel_is_used(monkeypatch, epilogue):
    from kiln.codegen.llvm import fused, kernels_nn
    calls = []
    for mod in (fused, kernels_nn):
        real = mod.depthwise_rows
        monkeypatch.setattr(mod, "depthwise_rows", lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    g, *_ = build((8, 8), 32, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), epilogue)
    kiln.compile(g, cache=False)
    assert calls


def grouped_ref(x, w, groups, strides, dil, pads):
    """Grouped conv2d: group g's outputs read only its input channels."""
    cg, og = w.shape[2], w.shape[3] // groups
    return np.concatenate([conv_ref(x[..., g * cg:(g + 1) * cg], w[..., g * og:(g + 1) * og], strides, dil, pads)
                           for g in range(groups)], axis=-1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hw,c,o,groups,strides,dil,pads", [
    ((16, 16), 16, 32, 4, (1, 1), (1, 1), (1, 1, 1, 1)),       # 4 channels in, 8 out per group
    ((15, 13), 24, 48, 24, (2, 2), (1, 1), (0, 1, 0, 1)),      # depth multiplier 2
    ((12, 12), 8, 8, 2, (1, 2), (2, 1), (2, 2, 1, 1)),         # dilated, strided
])
def test_grouped_matches_numpy(hw, c, o, groups, strides, dil, pads, threads):
    g = Graph("grouped")
    x = g.add_input("x", TensorType(("N", *hw, c)))
    w = rng.standard_normal((3, 3, c // groups, o)).astype(np.float32)
    g.set_outputs([g.op("conv2d", x, g.add_param("w", w), strides=strides, dilations=dil, pads=pads,
                        groups=groups)])
    exe = kiln.compile(g, threads=threads, cache=False)
    for n in (1, 3):
        xs = rng.standard_normal((n, *hw, c)).astype(np.float32)
        np.testing.assert_allclose(exe(xs), grouped_ref(xs, w, groups, strides, dil, pads),
                                   rtol=1e-5, atol=1e-4)


def kernel_grad_ref(x, dy, k, strides, dil, pads):
    """dw[i, j, 0, c] = sum_{n, y, x} xpad[n, y*sh + i*dh, x*sw + j*dw, c] * dy[n, y, x, c]."""
    out = np.zeros((*k, 1, x.shape[-1]))
    for i, j, win in conv_windows(x, k, strides, dil, pads):
        out[i, j, 0] = np.einsum("nhwc,nhwc->c", win, dy.astype(np.float64))
    return out


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hw,c,k,strides,dil,pads", [
    ((16, 16), 32, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((15, 17), 37, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1)),      # a channel tail, stride 2
    ((8, 7), 5, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),         # fewer channels than a vector
    ((12, 10), 24, (3, 2), (1, 2), (2, 1), (2, 1, 1, 0)),      # dilated, asymmetric
])
def test_depthwise_kernel_gradient_matches_numpy(hw, c, k, strides, dil, pads, threads):
    from kiln.codegen.llvm import kernels_dwconv
    g = Graph("dwk")
    x = g.add_input("x", TensorType(("N", *hw, c)))
    w = rng.standard_normal((*k, 1, c)).astype(np.float32)
    y = g.op("conv2d", x, g.add_param("w", w), strides=strides, dilations=dil, pads=pads, groups=c)
    dy = g.add_input("dy", TensorType(("N", *y.type.shape[1:])))
    node = g.op("conv2d_backprop_kernel", x, dy, kernel=k, strides=strides, dilations=dil, pads=pads,
                groups=c)
    assert kernels_dwconv.backprop_kernel_ok(node.producer)
    g.set_outputs([node])
    exe = kiln.compile(g, threads=threads, cache=False)
    for n in (1, 3):
        xv = rng.standard_normal((n, *hw, c)).astype(np.float32)
        dyv = rng.standard_normal((n, *y.type.shape[1:])).astype(np.float32)
        np.testing.assert_allclose(exe(xv, dyv), kernel_grad_ref(xv, dyv, k, strides, dil, pads),
                                   rtol=1e-4, atol=1e-4)
