"""End to end: an LSTM text classifier (Embedding 10000x64 -> LSTM 128 -> Dense 1
sigmoid) over 64 and 1000 time steps, and a 2-block Transformer encoder, compiled and
compared with numpy implementations written here."""
import numpy as np
import pytest

import kiln
from kiln.layers import (LSTM, Dense, Embedding, GlobalAveragePooling1D, Layer,
                         LayerNormalization, MultiHeadAttention)

rng = np.random.default_rng(3)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- LSTM text classifier ----------------------------------------------------------------------
def classifier(steps):
    return kiln.Sequential([kiln.Input(shape=(steps,), dtype="int32"), Embedding(10000, 64),
                            LSTM(128), Dense(1, activation="sigmoid")])


def np_classifier(ids, weights):
    table, k, u, b, wd, bd = (w.astype(np.float64) for w in weights)
    x = table[ids]
    h = c = np.zeros((ids.shape[0], 128))
    for t in range(ids.shape[1]):
        z = x[:, t] @ k + h @ u + b
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return sigmoid(h @ wd + bd)


@pytest.mark.parametrize("steps, batches", [(64, (1, 5)), (1000, (2,))])
def test_lstm_text_classifier(steps, batches):
    model = classifier(steps)
    assert model.count_params() == 640000 + 98816 + 129          # Keras' summary: 738,945
    weights = model.get_weights()
    for n in batches:
        ids = rng.integers(0, 10000, (n, steps)).astype(np.int32)
        got = model.predict(ids)
        assert got.shape == (n, 1)
        np.testing.assert_allclose(got, np_classifier(ids, weights), rtol=1e-4, atol=1e-5)


def test_classifier_graph_does_not_grow_with_the_sequence_length():
    short, long = kiln.lower(classifier(64)), kiln.lower(classifier(1000))
    assert [n.op.name for n in short.nodes] == [n.op.name for n in long.nodes]
    assert "scan" in [n.op.name for n in short.nodes]
    body = lambda g: [m.op.name for n in g.nodes for r in n.regions for m in r.nodes]  # noqa: E731
    assert body(short) == body(long)


# -- Transformer encoder -----------------------------------------------------------------------
class TransformerBlock(Layer):
    """Post-norm encoder block: x + MHA(x) -> LayerNorm -> + FFN -> LayerNorm."""

    def __init__(self, d_model, heads, ffn, **kwargs):
        super().__init__(**kwargs)
        self.att = MultiHeadAttention(num_heads=heads, key_dim=d_model // heads)
        self.ffn1 = Dense(ffn, activation="relu")
        self.ffn2 = Dense(d_model)
        self.norm1 = LayerNormalization(epsilon=1e-6)
        self.norm2 = LayerNormalization(epsilon=1e-6)

    def call(self, x):
        h = self.norm1(kiln.ops.add(x, self.att(x, x)))
        return self.norm2(kiln.ops.add(h, self.ffn2(self.ffn1(h))))


def np_layer_norm(x, gamma, beta, eps=1e-6):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_block(x, w, heads):
    wq, bq, wk, bk, wv, bv, wo, bo, w1, b1, w2, b2, g1, be1, g2, be2 = w
    q = np.einsum("btd,dhk->bthk", x, wq) + bq
    k = np.einsum("bsd,dhk->bshk", x, wk) + bk
    v = np.einsum("bsd,dhk->bshk", x, wv) + bv
    p = softmax(np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(wq.shape[-1]))
    att = np.einsum("bthv,hvd->btd", np.einsum("bhts,bshv->bthv", p, v), wo) + bo
    h = np_layer_norm(x + att, g1, be1)
    return np_layer_norm(h + np.maximum(h @ w1 + b1, 0) @ w2 + b2, g2, be2)


def test_transformer_encoder():
    model = kiln.Sequential([kiln.Input(shape=(16, 32)),
                             TransformerBlock(32, 4, 64), TransformerBlock(32, 4, 64),
                             GlobalAveragePooling1D(), Dense(3, activation="softmax")])
    per_block = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 64
    assert model.count_params() == 2 * per_block + 32 * 3 + 3
    # random (not default) weights, so biases and the norms' gamma/beta matter
    model.set_weights([rng.uniform(-0.3, 0.3, w.shape).astype(np.float32) + (w == 1)
                       for w in model.get_weights()])
    w = [a.astype(np.float64) for a in model.get_weights()]
    for n in (1, 3):
        x = rng.standard_normal((n, 16, 32)).astype(np.float32)
        h = np_block(np_block(x.astype(np.float64), w[:16], 4), w[16:32], 4)
        want = softmax(h.mean(axis=1) @ w[32] + w[33])
        np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)
