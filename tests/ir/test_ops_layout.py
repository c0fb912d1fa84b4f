"""Layout ops: pack_panels, matmul_packed, conv2d_packed, conv2d_winograd,
attention_packed and attention against numpy written here."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, OpTypeError, TensorType

COVERED = {"pack_panels", "matmul_packed", "conv2d_packed", "conv2d_winograd", "attention_packed",
           "attention"}


@pytest.mark.parametrize("k,p,nr", [(3, 5, 2), (7, 32, 32), (7, 33, 32), (1, 1, 8), (4, 16, 8)])
def test_pack_panels_layout(k, p, nr):
    w = np.arange(k * p, dtype=np.float32).reshape(k, p) + 1
    g = Graph("p")
    x = g.add_input("x", TensorType((k, p)))
    g.set_outputs([g.op("pack_panels", x, nr=nr)])
    got = kiln.interpret(g, w)
    panels = -(-p // nr)
    assert got.shape == (panels, k, nr)
    for q in range(panels):
        for kk in range(k):
            for j in range(nr):
                col = q * nr + j
                assert got[q, kk, j] == (w[kk, col] if col < p else 0.0)


@pytest.mark.parametrize("a_shape,k,p,nr", [((5, 7), 7, 33, 32), (("N", 7), 7, 9, 4), ((2, 3, 7), 7, 16, 8)])
def test_matmul_packed_equals_matmul(a_shape, k, p, nr):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, p)).astype(np.float32)
    g = Graph("m")
    a = g.add_input("a", TensorType(a_shape))
    wp = g.add_param("w", w)
    g.set_outputs([g.op("matmul_packed", a, g.op("pack_panels", wp, nr=nr), n=p)])
    x = rng.standard_normal([4 if d == "N" else d for d in a_shape]).astype(np.float32)
    np.testing.assert_allclose(kiln.interpret(g, x), x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a,bp,attrs,match", [
    ((5, 7), (2, 7, 4), {"n": 9}, r"n=9 does not fit 2 panels of 4"),
    ((5, 6), (2, 7, 4), {"n": 8}, r"inner dimensions differ"),
    ((7,), (2, 7, 4), {"n": 8}, r"expects \[\.\.\., M, K\]"),
])
def test_matmul_packed_type_errors(a, bp, attrs, match):
    g = Graph("e")
    x = g.add_input("a", TensorType(a))
    y = g.add_input("b", TensorType(bp))
    with pytest.raises(OpTypeError, match=match):
        g.op("matmul_packed", x, y, **attrs)


def test_pack_panels_needs_a_matrix_with_static_columns():
    g = Graph("e")
    assert g.op("pack_panels", g.add_input("k", TensorType(("N", 4))), nr=4).type.shape == (1, "N", 4)
    assert g.op("pack_panels", g.add_input("t", TensorType((9, "N"))), nr=4,
                perm=(1, 0)).type.shape == (3, "N", 4)
    assert g.op("pack_panels", g.add_input("c", TensorType(("N", 3, 4))), nr=4).type.shape == ("N", 1, 3, 4)
    with pytest.raises(OpTypeError, match=r"matrix \[\.\.\., K, P\] with a static P"):
        g.op("pack_panels", g.add_input("a", TensorType((4, "N"))), nr=4)
    with pytest.raises(OpTypeError, match=r"after perm \[1, 0\]"):
        g.op("pack_panels", g.add_input("b", TensorType(("N", 4))), nr=4, perm=(1, 0))
    with pytest.raises(OpTypeError, match="not a permutation"):
        g.op("pack_panels", g.add_input("d", TensorType((2, 3))), nr=4, perm=(0, 0))


def test_batched_pack_panels_and_matmul_packed_references():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 6, 3, 5)).astype(np.float32)      # B = b^(0,2,3,1): [2,3,5,6]
    g = Graph("b")
    av, bv = g.add_input("a", TensorType(("N", 3, 4, 5))), g.add_input("b", TensorType(("N", 6, 3, 5)))
    bp = g.op("pack_panels", bv, nr=4, perm=(0, 2, 3, 1))
    assert bp.type.shape == ("N", 3, 2, 5, 4)
    g.set_outputs([g.op("matmul_packed", av, bp, n=6)])
    np.testing.assert_allclose(kiln.interpret(g, a, b), a @ b.transpose(0, 2, 3, 1), rtol=1e-5)
    with pytest.raises(OpTypeError, match="batch dims"):
        g.op("matmul_packed", g.add_input("x", TensorType(("N", 2, 4, 5))), bp, n=6)


def test_pack_panels_transpose_and_matmul_packed_transpose_a_references():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((5, 3)).astype(np.float32)       # A = a^T: [3, 5]
    w = rng.standard_normal((7, 5)).astype(np.float32)       # B = w^T: [5, 7]
    g = Graph("t")
    av = g.add_input("a", TensorType((5, 3)))
    wv = g.add_input("w", TensorType((7, 5)))
    bp = g.op("pack_panels", wv, nr=4, perm=(1, 0))
    g.set_outputs([g.op("matmul_packed", av, bp, n=7, transpose_a=True)])
    np.testing.assert_allclose(kiln.interpret(g, a, w), a.T @ w.T, rtol=1e-6)
    with pytest.raises(OpTypeError, match=r"\[K, M\] \(transpose_a\)"):
        g.op("matmul_packed", g.add_input("r3", TensorType((2, 5, 3))), bp, n=7, transpose_a=True)


def test_conv2d_packed_equals_conv2d():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 4, 6)).astype(np.float32)
    x = rng.standard_normal((2, 7, 5, 4)).astype(np.float32)
    attrs = dict(strides=(2, 1), dilations=(1, 2), pads=(1, 1, 0, 2))
    g = Graph("c")
    xv = g.add_input("x", TensorType(("N", 7, 5, 4)))
    wv = g.add_param("w", w)
    packed = g.op("pack_panels", g.op("reshape", wv, shape=(24, 6)), nr=4)
    g.set_outputs([g.op("conv2d_packed", xv, packed, kernel=(3, 2), n=6, **attrs),
                   g.op("conv2d", xv, wv, groups=1, **attrs)])
    a, b = kiln.interpret(g, x)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # and against a direct loop written here
    xp = np.pad(x, ((0, 0), (1, 1), (0, 2), (0, 0)))
    want = np.zeros_like(b)
    for y in range(b.shape[1]):
        for z in range(b.shape[2]):
            patch = xp[:, 2 * y:2 * y + 3, z:z + 4:2, :]
            want[:, y, z, :] = np.einsum("nijc,ijco->no", patch, w)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-5)


def test_conv2d_packed_pool_is_the_max_pool_of_the_conv():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 3, 2, 5)).astype(np.float32)
    x = rng.standard_normal((2, 9, 8, 2)).astype(np.float32)
    g = Graph("p")
    xv = g.add_input("x", TensorType(("N", 9, 8, 2)))
    wv = g.add_param("w", w)
    packed = g.op("pack_panels", g.op("reshape", wv, shape=(18, 5)), nr=4)
    pooled = g.op("conv2d_packed", xv, packed, kernel=(3, 3), n=5, pool=(2, 3))
    assert pooled.type.shape == ("N", 3, 2, 5)                  # 7x6 conv output, windows 2x3
    g.set_outputs([pooled, g.op("max_pool2d", g.op("conv2d", xv, wv, groups=1),
                                window=(2, 3), strides=(2, 3), pads=(0, 0, 0, 0))])
    a, b = kiln.interpret(g, x)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(OpTypeError, match="pool must be"):
        g.op("conv2d_packed", xv, packed, kernel=(3, 3), n=5, pool=(0, 2))


@pytest.mark.parametrize("hw,pads,pool", [((7, 5), (1, 1, 1, 1), ()), ((6, 9), (0, 0, 0, 0), ()),
                                          ((8, 7), (2, 0, 0, 1), ()), ((9, 8), (1, 1, 1, 1), (2, 2))])
def test_conv2d_winograd_reference_is_the_3x3_conv(hw, pads, pool):
    """The Winograd algorithm in numpy (the op's reference) against a direct loop of the
    3x3 cross-correlation written here; pooled: 2x2 max windows of it."""
    from kiln.ir.ops.winograd import winograd_weights
    rng = np.random.default_rng(6)
    h, w_ = hw
    w = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
    x = rng.standard_normal((2, h, w_, 6)).astype(np.float32)
    g = Graph("w")
    xv = g.add_input("x", TensorType(("N", h, w_, 6)))
    up = g.op("pack_panels", g.constant(winograd_weights(w)), nr=4)
    y = g.op("conv2d_winograd", xv, up, n=5, pads=pads, pool=pool)
    g.set_outputs([y])
    got = kiln.interpret(g, x)
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[:2], pads[2:], (0, 0)))
    oh, ow = xp.shape[1] - 2, xp.shape[2] - 2
    want = np.zeros((2, oh, ow, 5))
    for yy in range(oh):
        for xx in range(ow):
            want[:, yy, xx] = np.einsum("nijc,ijco->no", xp[:, yy:yy + 3, xx:xx + 3], w)
    if pool:
        want = want[:, :oh // 2 * 2, :ow // 2 * 2].reshape(2, oh // 2, 2, ow // 2, 2, 5).max(axis=(2, 4))
    assert y.type.shape == ("N", *want.shape[1:3], 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(OpTypeError, match="pool must be"):
        g.op("conv2d_winograd", xv, up, n=5, pool=(2, 3))
    with pytest.raises(OpTypeError, match="does not fit"):
        g.op("conv2d_winograd", xv, up, n=9)
    with pytest.raises(OpTypeError, match="panels' depth"):
        g.op("conv2d_winograd", g.add_input("z", TensorType(("N", h, w_, 7))), up, n=5)


def test_attention_packed_reference_and_types():
    """softmax(q @ k^T) @ v, batch by batch, with k^T and v packed."""
    rng = np.random.default_rng(8)
    q = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    k = rng.standard_normal((2, 7, 3, 4)).astype(np.float32)      # [N, keys, heads, D]
    v = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    g = Graph("att")
    qv, kv, vv = (g.add_input(n, TensorType(("N", *a.shape[1:]))) for n, a in (("q", q), ("k", k), ("v", v)))
    kp = g.op("pack_panels", kv, nr=4, perm=(0, 2, 3, 1))
    vp = g.op("pack_panels", vv, nr=4)
    y = g.op("attention_packed", qv, kp, vp, n_s=7, n=6)
    assert y.type.shape == ("N", 3, 5, 6)
    g.set_outputs([y])
    s = q.astype(np.float64) @ k.transpose(0, 2, 3, 1)
    e = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(kiln.interpret(g, q, k, v), (e / e.sum(-1, keepdims=True)) @ v, rtol=1e-5)
    with pytest.raises(OpTypeError, match="batched panels"):
        g.op("attention_packed", qv, g.op("pack_panels", g.add_input("w", TensorType((4, 7))), nr=4), vp,
             n_s=7, n=6)
    with pytest.raises(OpTypeError, match="inner dimensions"):
        g.op("attention_packed", qv, kp, g.op("pack_panels", vv, nr=4, perm=(0, 1, 3, 2)), n_s=7, n=7)


def test_attention_reference_and_types():
    """Heads layout: out[b, m, h] = softmax_s(scale * q[b, m, h] . k[b, s, h]) @ v[b, :, h]."""
    rng = np.random.default_rng(9)
    q = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    k = rng.standard_normal((2, 7, 3, 4)).astype(np.float32)
    v = rng.standard_normal((2, 7, 3, 6)).astype(np.float32)
    g = Graph("att")
    qv, kv, vv = (g.add_input(n, TensorType(("N", *a.shape[1:]))) for n, a in (("q", q), ("k", k), ("v", v)))
    y = g.op("attention", qv, kv, vv, scale=0.5)
    assert y.type.shape == ("N", 5, 3, 6)
    g.set_outputs([y])
    want = np.zeros((2, 5, 3, 6))
    for b in range(2):
        for h in range(3):
            s = 0.5 * q[b, :, h].astype(np.float64) @ k[b, :, h].T
            e = np.exp(s - s.max(-1, keepdims=True))
            want[b, :, h] = (e / e.sum(-1, keepdims=True)) @ v[b, :, h]
    np.testing.assert_allclose(kiln.interpret(g, q, k, v), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(OpTypeError, match=r"q \[B, M, H, D\]"):
        g.op("attention", qv, g.add_input("k2", TensorType(("N", 7, 2, 4))), vv)
    with pytest.raises(OpTypeError, match="static but B"):
        g.op("attention", g.add_input("q2", TensorType(("N", "M", 3, 4))), kv, vv)


def test_attention_mask_reference_and_types():
    rng = np.random.default_rng(10)
    q, k, v = (rng.standard_normal((2, n, 2, 3)).astype(np.float32) for n in (4, 5, 5))
    mask = rng.random((4, 5)) < 0.5
    mask[:, 0] = True
    g = Graph("att")
    qv, kv, vv = (g.add_input(n, TensorType(("N", *a.shape[1:]))) for n, a in (("q", q), ("k", k), ("v", v)))
    mv = g.add_input("m", TensorType((4, 5), "bool"))
    g.set_outputs([g.op("attention", qv, kv, vv, mv, scale=1.0, masked_value=-1e30)])
    s = np.einsum("bmhd,bshd->bhms", q.astype(np.float64), k)
    s = np.where(mask, s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum("bhms,bshe->bmhe", e / e.sum(-1, keepdims=True), v)
    np.testing.assert_allclose(kiln.interpret(g, q, k, v, mask), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(OpTypeError, match="broadcast to the scores"):
        g.op("attention", qv, kv, vv, g.add_input("m2", TensorType((4, 6), "bool")))
    with pytest.raises(OpTypeError, match="broadcast to the scores"):
        g.op("attention", qv, kv, vv, g.add_input("m3", TensorType((4, 5))))
