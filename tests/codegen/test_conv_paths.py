"""The implicit-GEMM convolution's special cases, against a numpy convolution written
here: few input channels (an image's first conv: the taps in a loop, the channels
unrolled), 1x1 strided projections, 'same' padding at odd sizes (a masked last row
block), batch 1 and more, one and two threads (rows split across the pool), with
and without a fused epilogue or residual add."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType

rng = np.random.default_rng(11)


def conv_windows(x, kernel_hw, strides, dil, pads):
    """(i, j, window) per kernel tap: window[n, y, x, c] = xpad[n, y*sh + i*dh, x*sw + j*dw, c]
    (float64, x zero-padded by pads = (top, bottom, left, right))."""
    (sh, sw), (dh, dw) = strides, dil
    top, bottom, left, right = pads
    kh, kw = kernel_hw
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    _, hp, wp, _ = xp.shape
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw, :]


def conv_ref(x, w, strides, dil, pads):
    """out[n, y, x, o] = sum_{i, j, c} xpad[n, y*sh + i*dh, x*sw + j*dw, c] * w[i, j, c, o]."""
    return sum(win @ w[i, j].astype(np.float64) for i, j, win in conv_windows(x, w.shape[:2], strides, dil, pads))


def build(hw, c, o, k, strides=(1, 1), dil=(1, 1), pads=(0, 0, 0, 0), epilogue=None):
    g = Graph("conv")
    x = g.add_input("x", TensorType(("N", *hw, c)))
    w = rng.standard_normal((*k, c, o)).astype(np.float32)
    y = g.op("conv2d", x, g.add_param("w", w), strides=strides, dilations=dil, pads=pads, groups=1)
    extra = {}
    if epilogue in ("bias_relu", "residual"):
        extra["b"] = rng.standard_normal(o).astype(np.float32)
        y = g.op("add", y, g.add_param("b", extra["b"]))
    if epilogue == "residual":
        y = g.op("add", y, g.add_input("r", TensorType(("N", *y.type.shape[1:]))))
        extra["r_shape"] = y.type.shape[1:]
    if epilogue in ("bias_relu", "residual"):
        y = g.op("relu", y)
    g.set_outputs([y])
    return g, w, extra


def check(g, w, extra, hw, c, strides, dil, pads, epilogue, threads, batches=(1, 3)):
    exe = kiln.compile(g, threads=threads, cache=False)
    assert "conv2d_packed(" in exe.ir
    if epilogue:
        assert exe.ir.count("= fusion(") == 1
    for n in batches:
        x = rng.standard_normal((n, *hw, c)).astype(np.float32)
        want = conv_ref(x, w, strides, dil, pads)
        args = [x]
        if epilogue in ("bias_relu", "residual"):
            want = want + extra["b"]
        if epilogue == "residual":
            r = rng.standard_normal((n, *extra["r_shape"])).astype(np.float32)
            args.append(r)
            want = want + r
        if epilogue:
            want = np.maximum(want, 0)
        tol = 1e-5 * np.sqrt(w.shape[0] * w.shape[1] * c)
        np.testing.assert_allclose(exe(*args), want, rtol=1e-5, atol=tol)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hw,c,o,k,strides,dil,pads,epilogue", [
    ((32, 32), 3, 32, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "bias_relu"),   # the ResNet stem
    ((7, 9), 3, 5, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), None),
    ((9, 7), 3, 33, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1), "bias_relu"),     # 'same', stride 2
    ((11, 13), 1, 64, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "residual"),
    ((10, 7), 2, 16, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), None),
    ((13, 12), 4, 40, (3, 3), (1, 2), (2, 2), (2, 2, 2, 2), "residual"),     # dilated
    ((8, 9), 3, 7, (3, 2), (2, 1), (1, 1), (2, 0, 1, 0), None),              # asymmetric
    ((6, 5), 3, 8, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), "bias_relu"),       # 'valid'
])
def test_few_channel_conv(hw, c, o, k, strides, dil, pads, epilogue, threads):
    g, w, extra = build(hw, c, o, k, strides, dil, pads, epilogue)
    check(g, w, extra, hw, c, strides, dil, pads, epilogue, threads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hw,c,o,epilogue", [
    ((32, 32), 32, 64, "residual"),     # the ResNet's projections, with the block's add
    ((16, 16), 64, 128, None),
    ((9, 7), 32, 40, "residual"),       # odd sizes, a partial last panel
    ((5, 11), 5, 33, "bias_relu"),
    ((7, 7), 16, 8, None),
])
def test_strided_1x1_projection(hw, c, o, epilogue, threads):
    g, w, extra = build(hw, c, o, (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), epilogue)
    check(g, w, extra, hw, c, (2, 2), (1, 1), (0, 0, 0, 0), epilogue, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_few_channel_conv_with_max_pool_in_the_conv(threads):
    """conv (3 channels, 'same') + bias + relu + 2x2 max pool: the pooled conv runs the
    tap loop once per pool position."""
    kiln.utils.set_random_seed(3)
    L = kiln.layers
    model = kiln.Sequential([kiln.Input((15, 14, 3)), L.Conv2D(24, 3, padding="same", activation="relu"),
                             L.MaxPooling2D(2)])
    exe = kiln.compile(model, threads=threads, cache=False)
    assert any(n.op.name == "conv2d_packed" and n.attrs["pool"]
               for f in exe.graph.nodes for n in ([f] + (list(f.regions[0].nodes) if f.regions else [])))
    for n in (1, 4):
        x = rng.standard_normal((n, 15, 14, 3)).astype(np.float32)
        np.testing.assert_allclose(exe(x), kiln.interpret(kiln.lower(model), x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_with_many_panels_split_across_threads(threads):
    """A GEMM with 4+ panels (split by panels) and a partial last panel, at row counts
    from a GEMV to many blocks, leftover rows included."""
    from kiln.passes.layout import panel_width
    g = Graph("d")
    x = g.add_input("x", TensorType(("N", 40)))
    p = 4 * panel_width() + 3
    w = rng.standard_normal((40, p)).astype(np.float32)
    g.set_outputs([g.op("relu", g.op("matmul", x, g.add_param("w", w)))])
    exe = kiln.compile(g, threads=threads, cache=False)
    assert "matmul_packed(" in exe.ir
    for m in (1, 23, 47, 48, 50, 97, 1000, 2000):
        a = rng.standard_normal((m, 40)).astype(np.float32)
        np.testing.assert_allclose(exe(a), np.maximum(a.astype(np.float64) @ w, 0), rtol=1e-5, atol=1e-4)
