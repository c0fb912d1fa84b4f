"""The fused attention kernels (layout pass: matmul -> softmax -> matmul becomes
attention_packed, or attention when q, k and v come in Keras' [batch, tokens, heads,
depth] layout; kernels_attention.py) against numpy written here: query rows that
fill whole row blocks, leave a partial one or are fewer than one register tile; key
counts and value widths that end in partial panels; one and two batch dims; one and
two threads. And where it must not fuse: the probabilities read elsewhere (a training
graph's backward pass does), or a softmax over another axis."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType

rng = np.random.default_rng(21)


def attention_ref(q, k, v):
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2)
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def build(batch, m, s, d, dv, extra_output=False, axis=-1):
    g = Graph("attention")
    q = g.add_input("q", TensorType(("N", *batch, m, d)))
    k = g.add_input("k", TensorType(("N", *batch, s, d)))
    v = g.add_input("v", TensorType(("N", *batch, s, dv)))
    perm = tuple(range(len(batch) + 1)) + (len(batch) + 2, len(batch) + 1)
    p = g.op("softmax", g.op("matmul", q, g.op("transpose", k, perm=perm)), axis=axis)
    o = g.op("matmul", p, v)
    g.set_outputs([o, p] if extra_output else [o])
    return g


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch,m,s,d,dv", [
    ((4,), 128, 128, 32, 32),      # the benchmark Transformer's heads
    ((2,), 50, 77, 16, 40),        # a partial row block, partial panels of keys and values
    ((), 5, 33, 8, 3),             # fewer rows than a register tile
    ((2, 3), 97, 64, 12, 64),      # two batch dims
])
def test_fused_attention_matches_numpy(batch, m, s, d, dv, threads):
    exe = kiln.compile(build(batch, m, s, d, dv), threads=threads, cache=False)
    assert exe.ir.count("attention_packed(") == 1
    assert "softmax(" not in exe.ir
    for n in (1, 2):
        q, k = (rng.standard_normal((n, *batch, r, d)).astype(np.float32) for r in (m, s))
        v = rng.standard_normal((n, *batch, s, dv)).astype(np.float32)
        np.testing.assert_allclose(exe(q, k, v), attention_ref(q, k, v), rtol=1e-4, atol=1e-5)


def test_not_fused_when_the_probabilities_are_read_elsewhere():
    exe = kiln.compile(build((2,), 9, 10, 4, 5, extra_output=True), cache=False)
    assert "attention_packed(" not in exe.ir
    q, k = (rng.standard_normal((3, 2, r, 4)).astype(np.float32) for r in (9, 10))
    v = rng.standard_normal((3, 2, 10, 5)).astype(np.float32)
    o, p = exe(q, k, v)
    np.testing.assert_allclose(o, attention_ref(q, k, v), rtol=1e-4, atol=1e-5)


def test_not_fused_for_a_softmax_over_the_queries():
    exe = kiln.compile(build((2,), 6, 6, 4, 5, axis=-2), cache=False)
    assert "attention_packed(" not in exe.ir


def test_training_a_transformer_keeps_the_unfused_chain():
    """The backward pass reads the probabilities: the step graph has no attention_packed,
    and inference on the trained model fuses and agrees with the reference interpreter."""
    inp = kiln.Input(shape=(8, 16))
    h = kiln.layers.MultiHeadAttention(num_heads=2, key_dim=8)(inp, inp)
    model = kiln.Model(inp, kiln.layers.Dense(1)(kiln.layers.GlobalAveragePooling1D()(h)))
    model.compile(optimizer="adam", loss="mse")
    x = rng.standard_normal((16, 8, 16)).astype(np.float32)
    model.fit(x, rng.standard_normal((16, 1)).astype(np.float32), batch_size=8, epochs=1, verbose=0)
    step_ir = model._train_step.train_exe.ir
    assert "= attention(" not in step_ir and "= attention_packed(" not in step_ir
    exe = kiln.compile(model, cache=False)
    assert "= attention(" in exe.ir
    np.testing.assert_allclose(exe(x), kiln.interpret(kiln.lower(model), x), rtol=1e-4, atol=1e-5)


def build_heads(m, s, h, d, dv, scale=None, transpose_back=True):
    """The chain Keras' MultiHeadAttention lowers to: [B, tokens, heads, depth] tensors,
    head transposes, the query scaled, and the output transposed back."""
    g = Graph("mha")
    q = g.add_input("q", TensorType(("N", m, h, d)))
    k = g.add_input("k", TensorType(("N", s, h, d)))
    v = g.add_input("v", TensorType(("N", s, h, dv)))
    qt = g.op("transpose", q, perm=(0, 2, 1, 3))
    if scale is not None:
        qt = g.op("mul", qt, g.constant(np.float32(scale)))
    p = g.op("softmax", g.op("matmul", qt, g.op("transpose", k, perm=(0, 2, 3, 1))), axis=-1)
    o = g.op("matmul", p, g.op("transpose", v, perm=(0, 2, 1, 3)))
    g.set_outputs([g.op("transpose", o, perm=(0, 2, 1, 3)) if transpose_back else o])
    return g


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m,s,h,d,dv,scale,back", [
    (128, 128, 4, 32, 32, 0.17677669, True),     # the benchmark Transformer's
    (50, 77, 3, 16, 40, 0.25, True),            # partial row block and panels
    (5, 9, 2, 8, 3, None, False),               # no scale, the output left in heads order
    (97, 33, 1, 12, 64, 2.0, True),
    (24, 40, 2, 20, 8, 0.3, True),              # keys and depths past whole transpose blocks
    (40, 600, 2, 32, 16, 0.5, True),            # keys too long for the heads kernel's buffers
])
def test_heads_form_matches_numpy(m, s, h, d, dv, scale, back, threads):
    exe = kiln.compile(build_heads(m, s, h, d, dv, scale, back), threads=threads, cache=False)
    if s * d > 1 << 14:         # layout.MAX_HEAD_FLOATS: attention_packed, packs in memory
        assert exe.ir.count("= attention_packed(") == 1 and "softmax" not in exe.ir
    else:
        assert exe.ir.count("= attention(") == 1
        assert "pack_panels" not in exe.ir and "softmax" not in exe.ir
        assert exe.ir.count("transpose(") == (0 if back else 1)
    for n in (1, 2):
        q = rng.standard_normal((n, m, h, d)).astype(np.float32)
        k = rng.standard_normal((n, s, h, d)).astype(np.float32)
        v = rng.standard_normal((n, s, h, dv)).astype(np.float32)
        qs = q * (1.0 if scale is None else scale)
        want = attention_ref(qs.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
        np.testing.assert_allclose(exe(q, k, v), want.transpose(0, 2, 1, 3) if back else want,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mask_shape", [("N", 1, 20, 30), (20, 30), ("N", 3, 20, 30), (1, 1, 1, 30)])
def test_heads_form_with_a_mask(mask_shape, threads):
    """where(mask, scores, -0.7 * float32 max) before the softmax, as Keras' attention
    masks: fused, the mask broadcast to the scores [B, H, M, S]."""
    m, s, h, d, dv = 20, 30, 3, 8, 8
    g = build_heads(m, s, h, d, dv, scale=0.3)
    # insert the mask: rebuild the graph with a where between the scores and the softmax
    g2 = Graph("masked")
    q, k, v = (g2.add_input(x.name, x.type) for x in g.inputs)
    mk = g2.add_input("mask", TensorType(mask_shape, "bool"))
    big = np.float32(-0.7 * np.finfo(np.float32).max)
    qt = g2.op("mul", g2.op("transpose", q, perm=(0, 2, 1, 3)), g2.constant(np.float32(0.3)))
    sc = g2.op("where", mk, g2.op("matmul", qt, g2.op("transpose", k, perm=(0, 2, 3, 1))), g2.constant(big))
    o = g2.op("matmul", g2.op("softmax", sc, axis=-1), g2.op("transpose", v, perm=(0, 2, 1, 3)))
    g2.set_outputs([g2.op("transpose", o, perm=(0, 2, 1, 3))])
    exe = kiln.compile(g2, threads=threads, cache=False)
    assert exe.ir.count("= attention(") == 1 and "where" not in exe.ir
    for n in (1, 2):
        qv = rng.standard_normal((n, m, h, d)).astype(np.float32)
        kv = rng.standard_normal((n, s, h, d)).astype(np.float32)
        vv = rng.standard_normal((n, s, h, dv)).astype(np.float32)
        shape = tuple(n if x == "N" else x for x in mask_shape)
        mv = rng.random(shape) < 0.6
        mv[..., 0] = True                       # every row attends somewhere
        sc = 0.3 * np.einsum("bmhd,bshd->bhms", qv.astype(np.float64), kv)
        sc = np.where(np.broadcast_to(mv, sc.shape), sc, -1e300)
        e = np.exp(sc - sc.max(-1, keepdims=True))
        want = np.einsum("bhms,bshe->bmhe", e / e.sum(-1, keepdims=True), vv)
        np.testing.assert_allclose(exe(qv, kv, vv, mv), want, rtol=1e-4, atol=1e-5)


def test_keras_causal_and_padding_masks_fuse():
    """MultiHeadAttention with use_causal_mask and an attention_mask input: one fused
    kernel, results as the reference interpreter's."""
    L = kiln.layers
    kiln.utils.set_random_seed(2)
    x = kiln.Input(shape=(12, 16))
    am = kiln.Input(shape=(12, 12), dtype="bool")
    h = L.MultiHeadAttention(num_heads=2, key_dim=8)(x, x, attention_mask=am, use_causal_mask=True)
    model = kiln.Model([x, am], h)
    exe = kiln.compile(model, cache=False)
    assert exe.ir.count("= attention(") == 1 and "softmax" not in exe.ir
    xv = rng.standard_normal((3, 12, 16)).astype(np.float32)
    mv = rng.random((3, 12, 12)) < 0.7
    mv[:, :, 0] = True
    np.testing.assert_allclose(exe(xv, mv), kiln.interpret(kiln.lower(model), xv, mv), rtol=1e-4, atol=1e-5)
