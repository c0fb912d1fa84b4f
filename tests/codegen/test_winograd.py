"""Winograd F(2x2, 3x3) convolution (kiln/ir/ops/winograd.py, kernels_winograd.py):
the kernel against the op's numpy reference, and whole convs -- through the layout
pass, with bias, activation, residual and pooling epilogues -- against the direct
convolution written in numpy here."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType
from kiln.ir.ops.winograd import winograd_weights
from kiln.passes import PassManager, pipeline
from kiln.passes.layout import panel_width

rng = np.random.default_rng(11)


def conv_ref(x, w, pads):
    """Direct 3x3 stride-1 cross-correlation in float64 (NHWC, HWIO)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[:2], pads[2:], (0, 0)))
    oh, ow = xp.shape[1] - 2, xp.shape[2] - 2
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(3):
        for j in range(3):
            out += xp[:, i:i + oh, j:j + ow] @ w[i, j].astype(np.float64)
    return out


def pool_ref(y):
    n, h, w, c = y.shape
    return y[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@pytest.mark.parametrize("h,w,c,o,pads", [
    (8, 8, 16, 32, (1, 1, 1, 1)),        # 'same', one tile row per thread at batch 1
    (13, 13, 32, 64, (0, 0, 0, 0)),      # 'valid', odd output (partial last tiles)
    (7, 9, 20, 3, (1, 1, 1, 1)),         # channels in vectors of 4, a partial panel
    (6, 5, 16, 40, (2, 0, 1, 0)),        # asymmetric pads, two panels (one partial)
    (32, 32, 32, 32, (1, 1, 1, 1)),      # many tile blocks
    (8, 8, 128, 96, (1, 1, 1, 1)),       # C = 128: small blocks, panel groups
])
@pytest.mark.parametrize("pool", [(), (2, 2)])
def test_kernel_matches_the_reference(h, w, c, o, pads, pool):
    g = Graph("w")
    x = g.add_input("x", TensorType(("N", h, w, c)))
    k = rng.standard_normal((3, 3, c, o)).astype(np.float32)
    up = g.op("pack_panels", g.constant(winograd_weights(k)), nr=panel_width())
    g.set_outputs([g.op("conv2d_winograd", x, up, n=o, pads=pads, pool=pool)])
    exe = kiln.compile(g, passes=["constfold"], threads=2)
    one = kiln.compile(g, passes=["constfold"], threads=1)
    for n in (1, 3):
        xv = rng.standard_normal((n, h, w, c)).astype(np.float32)
        got, ref = exe(xv), kiln.interpret(g, xv)
        scale = np.abs(ref).max()            # sums of 9*C terms: errors scale with them
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * scale)
        direct = conv_ref(xv, k, pads)
        np.testing.assert_allclose(got, pool_ref(direct) if pool else direct, rtol=1e-5,
                                   atol=2e-6 * scale)
        np.testing.assert_array_equal(one(xv), got)      # units never share an output


def conv_graph(h, c, o, pads, pool=False, residual=False, strides=(1, 1), trained=False):
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", h, h, c)))
    k = rng.standard_normal((3, 3, c, o)).astype(np.float32) * 0.2
    bias = rng.standard_normal(o).astype(np.float32)
    wv = g.add_param("k", k)
    if trained:                                  # the graph updates k: a variable
        g.add_update(wv, g.op("mul", wv, g.constant(0.5)))
    y = g.op("add", g.op("conv2d", x, wv, strides=strides, pads=pads), g.add_param("b", bias))
    if residual:
        y = g.op("add", y, x)
    y = g.op("relu", y)
    if pool:
        y = g.op("max_pool2d", y, window=(2, 2), strides=(2, 2))
    g.set_outputs([y])
    return g, k, bias


def optimized_ops(g):
    return [n.op.name for n in PassManager(pipeline("inference")).run(g).nodes]


@pytest.mark.parametrize("pool,residual", [(False, False), (True, False), (False, True)])
def test_layout_pass_runs_3x3_convs_in_the_winograd_domain(pool, residual):
    h, c = 11, 16
    g, k, bias = conv_graph(h, c, 16 if residual else 24, (1, 1, 1, 1), pool=pool, residual=residual)
    ops = optimized_ops(g)
    assert "conv2d_winograd" in str(PassManager(pipeline("inference")).run(g))
    assert "max_pool2d" not in ops and "relu" not in ops          # pooled and fused in
    xv = rng.standard_normal((2, h, h, c)).astype(np.float32)
    want = conv_ref(xv, k, (1, 1, 1, 1)) + bias
    if residual:
        want = want + xv
    want = np.maximum(want, 0)
    if pool:
        want = pool_ref(want)
    np.testing.assert_allclose(kiln.compile(g)(xv), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs", [dict(strides=(2, 2)), dict(trained=True), dict(c=3)])
def test_other_convs_keep_the_direct_kernel(kwargs):
    """Strided convs, kernels a graph trains (the transform would run every step) and
    few-channel stems stay conv2d_packed."""
    c = kwargs.pop("c", 16)
    g, _, _ = conv_graph(12, c, 16, (1, 1, 1, 1), **kwargs)
    text = str(PassManager(pipeline("inference")).run(g))
    assert "conv2d_winograd" not in text and "conv2d_packed" in text


def test_a_keras_style_cnn_agrees_with_the_interpreter_of_the_unoptimized_graph():
    """Conv2D(3x3, same) -> MaxPool -> Conv2D(3x3, valid) -> Dense through kiln.compile:
    the Winograd path against the reference interpreter on kiln.lower(model)."""
    m = kiln.Sequential([kiln.Input(shape=(12, 12, 16)),
                         kiln.layers.Conv2D(32, 3, padding="same", activation="relu"),
                         kiln.layers.MaxPooling2D(),
                         kiln.layers.Conv2D(32, 3, activation="relu"),
                         kiln.layers.Flatten(), kiln.layers.Dense(5)])
    exe = kiln.compile(m)
    text = str(exe.graph)
    assert text.count("conv2d_winograd") >= 2 and "max_pool2d" not in text
    xv = rng.standard_normal((3, 12, 12, 16)).astype(np.float32)
    np.testing.assert_allclose(exe(xv), kiln.interpret(kiln.lower(m), xv), rtol=1e-4, atol=1e-4)


def test_the_transformed_kernel_is_a_param_never_a_spelled_out_constant():
    """The layout pass adds U = G g G^T as a param: IR text (printed by the verifier
    after every pass, hashed for the compile cache) names it instead of spelling out
    16*C*O values -- a seed CNN's warm start from the cache was 0.13 s, 0.02 s now."""
    g, _, _ = conv_graph(12, 32, 64, (1, 1, 1, 1))
    after = PassManager(["simplify", "constfold", "layout"]).run(g)
    assert any(n.op.name == "conv2d_winograd" for n in after.nodes)
    big = [n for n in after.nodes if n.op.name == "constant" and n.attrs["value"].size > 16]
    assert not big and len(str(after)) < 4000


@pytest.mark.parametrize("h,pool,residual", [(11, False, True), (11, True, False), (9, False, False)])
def test_register_epilogue_equals_the_pixel_pass_bit_for_bit(monkeypatch, h, pool, residual):
    """The fused epilogue runs on the output transform's vectors before their store
    (pixels past an odd edge read the tile's first pixel's operands and are dropped):
    the same bits as a pass over each stored pixel."""
    from kiln.codegen.llvm import fused
    g, _, _ = conv_graph(h, 16, 16 if residual else 32, (1, 1, 1, 1), pool=pool, residual=residual)
    exes = []
    for on in (True, False):
        monkeypatch.setattr(fused, "VECTOR_EPILOGUE", on)
        exes.append(kiln.compile(g, cache=False, tiered=False, threads=2))
    assert "conv2d_winograd" in exes[0].ir
    for n in (1, 3):
        xv = rng.standard_normal((n, h, h, 16)).astype(np.float32)
        np.testing.assert_array_equal(exes[0](xv), exes[1](xv))
        np.testing.assert_allclose(exes[0](xv), kiln.interpret(g, xv), rtol=1e-4, atol=1e-4)
