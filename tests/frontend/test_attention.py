"""MultiHeadAttention and Embedding against numpy implementations of Keras' equations,
through the interpreter and compiled code."""
import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, TensorType, interpret
from kiln.layers import Embedding, MultiHeadAttention

from .helpers import softmax

rng = np.random.default_rng(9)


def both(build, *arrays):
    """Interpreted and compiled outputs (lists) of the graph ``build(*input values)``
    makes, on ``arrays`` (first axis: the batch)."""
    g = Graph("t")
    vals = [g.add_input(f"x{i}", TensorType(("N",) + a.shape[1:], DType.from_numpy(a.dtype)))
            for i, a in enumerate(arrays)]
    with g.building():
        out = build(*vals)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    g.set_outputs(outs)
    fix = (lambda r: list(r) if len(outs) > 1 else [r])  # noqa: E731
    return fix(interpret(g, *arrays)), fix(kiln.compile(g)(*arrays))


def close(got, want, tol=2e-5):
    for a, b in zip(got, want):
        assert a.shape == b.shape, (a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# -- MultiHeadAttention -----------------------------------------------------------------------
def np_mha(q, v, k, w, key_dim, mask=None, use_bias=True):
    if use_bias:
        wq, bq, wk, bk, wv, bv, wo, bo = (a.astype(np.float64) for a in w)
    else:
        wq, wk, wv, wo = (a.astype(np.float64) for a in w)
        bq = bk = bv = bo = 0.0
    qh = np.einsum("btd,dhk->bthk", q, wq) + bq
    kh = np.einsum("bsd,dhk->bshk", k, wk) + bk
    vh = np.einsum("bsd,dhk->bshk", v, wv) + bv
    scores = np.einsum("bthk,bshk->bhts", qh, kh) / np.sqrt(key_dim)
    if mask is not None:
        scores = np.where(mask[:, None], scores, -1e30)
    probs = softmax(scores)
    ctx = np.einsum("bhts,bshv->bthv", probs, vh)
    return np.einsum("bthv,hv...->bt...", ctx, wo) + bo, probs


def randomize(layer):
    layer.set_weights([rng.uniform(-0.5, 0.5, v.shape).astype(np.float32) for v in layer.weights])
    return layer.get_weights()


def build_mha(layer, qs, vs, ks=None):
    layer.build(qs, vs, ks)
    return randomize(layer)


@pytest.mark.parametrize("n", [1, 3])
def test_self_attention_and_scores(n):
    layer = MultiHeadAttention(num_heads=4, key_dim=3)
    w = build_mha(layer, (None, 5, 8), (None, 5, 8))
    x = rng.standard_normal((n, 5, 8)).astype(np.float32)
    got_i, got_c = both(lambda a: layer(a, a, return_attention_scores=True), x)
    want = np_mha(x, x, x, w, 3)
    close(got_i, want)
    close(got_c, want)


def test_cross_attention_key_value_dims_and_output_shape():
    layer = MultiHeadAttention(num_heads=2, key_dim=3, value_dim=5, output_shape=7)
    w = build_mha(layer, (None, 4, 6), (None, 9, 2), (None, 9, 3))
    assert [v.shape for v in layer.weights] == [(6, 2, 3), (2, 3), (3, 2, 3), (2, 3), (2, 2, 5),
                                                (2, 5), (2, 5, 7), (7,)]
    q, v, k = (rng.standard_normal((3, t, d)).astype(np.float32)
               for t, d in ((4, 6), (9, 2), (9, 3)))
    got_i, got_c = both(lambda a, b, c: layer(a, b, key=c), q, v, k)
    want = [np_mha(q, v, k, w, 3)[0]]
    close(got_i, want)
    close(got_c, want)


def test_attention_mask_and_causal_mask():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, use_bias=False)
    w = build_mha(layer, (None, 6, 5), (None, 6, 5))
    assert len(layer.weights) == 4
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    mask = rng.random((3, 6, 6)) > 0.4
    mask[:, :, 0] = True                       # every query attends to something
    got_i, got_c = both(lambda a, m: layer(a, a, attention_mask=m), x, mask)
    want = [np_mha(x, x, x, w, 4, mask, use_bias=False)[0]]
    close(got_i, want)
    close(got_c, want)
    causal = np.broadcast_to(np.tril(np.ones((6, 6), bool)), (3, 6, 6))
    got_i, got_c = both(lambda a, m: layer(a, a, attention_mask=m, use_causal_mask=True),
                        x, mask.astype(np.float32))
    want = [np_mha(x, x, x, w, 4, mask & causal, use_bias=False)[0]]
    close(got_i, want)
    close(got_c, want)


def test_mha_param_count_and_weight_paths():
    layer = MultiHeadAttention(num_heads=2, key_dim=2)
    layer.build((None, 8, 16), (None, 4, 16))
    # 3 x (16*2*2 + 2*2) + (2*2*16 + 16)
    assert layer.count_params() == 284
    assert [v.path for v in layer.weights] == [
        f"multi_head_attention/{p}/{n}" for p in ("query", "key", "value", "attention_output")
        for n in ("kernel", "bias")]


def test_mha_errors():
    with pytest.raises(NotImplementedError, match="attention_axes"):
        MultiHeadAttention(2, 4, attention_axes=(1, 2))
    with pytest.raises(NotImplementedError, match="kernel_regularizer"):
        MultiHeadAttention(2, 4, kernel_regularizer="l2")
    layer = MultiHeadAttention(2, 4, dropout=0.1)          # the identity at inference
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    assert layer(x, x).shape == (2, 3, 4)


# -- Embedding --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_embedding(dtype):
    layer = Embedding(11, 4)
    layer.build(None)
    table = layer.get_weights()[0]
    assert table.shape == (11, 4) and np.abs(table).max() <= 0.05 and table.std() > 0.01
    ids = rng.integers(0, 11, (5, 7)).astype(dtype)
    got_i, got_c = both(lambda a: layer(a), ids)
    close(got_i, [table[ids.astype(int)]], tol=0)
    close(got_c, [table[ids.astype(int)]], tol=0)
    assert layer.count_params() == 44


def test_embedding_weights_argument_and_errors():
    table = rng.standard_normal((6, 3)).astype(np.float32)
    layer = Embedding(6, 3, weights=table)
    np.testing.assert_array_equal(layer(np.array([[5, 0]])), table[[[5, 0]]])
    assert layer.weights[0].path == "embedding/embeddings"
    with pytest.raises(NotImplementedError, match="mask_zero"):
        Embedding(6, 3, mask_zero=True)
    with pytest.raises(ValueError, match="out of range"):
        layer(np.array([[6]]))
    with pytest.raises(ValueError, match="input_dim"):
        Embedding(0, 3)
