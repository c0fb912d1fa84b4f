"""Losses vs numpy formulas of Keras 3's definitions (float64 references)."""
import numpy as np
import pytest

import kiln
from kiln import losses as L
from kiln.ir import Graph, TensorType

EPS = 1e-7
rng = np.random.default_rng(0)
YT = rng.random((6, 4))
YP = rng.random((6, 4)) + 0.05
LOGITS = rng.normal(size=(6, 4)) * 3
LABELS = rng.integers(0, 4, 6)
ONEHOT = np.eye(4)[LABELS]
BIN = rng.integers(0, 2, (6, 4)).astype(float)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def hinge_labels(y):
    return 2 * y - 1 if np.all((y == 0) | (y == 1)) else y


def l2n(x):
    return x * np.minimum(1 / np.sqrt((x * x).sum(-1, keepdims=True)), 1 / EPS)


CASES = {
    "mean_squared_error": (YT, YP, lambda t, p: ((t - p) ** 2).mean(-1)),
    "mean_absolute_error": (YT, YP, lambda t, p: np.abs(t - p).mean(-1)),
    "mean_absolute_percentage_error": (YT, YP, lambda t, p: 100 * np.abs(
        (t - p) / np.maximum(np.abs(t), EPS)).mean(-1)),
    "mean_squared_logarithmic_error": (YT, YP, lambda t, p: (
        (np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2).mean(-1)),
    "huber": (YT * 3, YP, lambda t, p: np.where(np.abs(p - t) <= 1, 0.5 * (p - t) ** 2,
                                                np.abs(p - t) - 0.5).mean(-1)),
    "log_cosh": (YT, YP * 4, lambda t, p: np.log(np.cosh(p - t)).mean(-1)),
    "hinge": (BIN, LOGITS, lambda t, p: np.maximum(1 - hinge_labels(t) * p, 0).mean(-1)),
    "squared_hinge": (BIN, LOGITS, lambda t, p: (np.maximum(1 - hinge_labels(t) * p, 0) ** 2
                                                 ).mean(-1)),
    "categorical_hinge": (ONEHOT, LOGITS, lambda t, p: np.maximum(
        ((1 - t) * p).max(-1) - (t * p).sum(-1) + 1, 0)),
    "kl_divergence": (softmax(LOGITS), YP / YP.sum(-1, keepdims=True), lambda t, p: (
        np.clip(t, EPS, 1) * np.log(np.clip(t, EPS, 1) / np.clip(p, EPS, 1))).sum(-1)),
    "poisson": (YT * 3, YP, lambda t, p: (p - t * np.log(p + EPS)).mean(-1)),
    "cosine_similarity": (YT - 0.5, YP - 0.5, lambda t, p: -(l2n(t) * l2n(p)).sum(-1)),
    "binary_crossentropy": (BIN, np.clip(YP, 0, 1), lambda t, p: -(
        t * np.log(np.clip(p, EPS, 1 - EPS)) + (1 - t) * np.log(1 - np.clip(p, EPS, 1 - EPS))
    ).mean(-1)),
    "categorical_crossentropy": (ONEHOT, YP, lambda t, p: -(t * np.log(np.clip(
        p / p.sum(-1, keepdims=True), EPS, 1 - EPS))).sum(-1)),
    "sparse_categorical_crossentropy": (LABELS, YP, lambda t, p: -log_softmax(
        np.log(np.clip(p, EPS, 1 - EPS)))[np.arange(len(t)), t.astype(int)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_function_matches_numpy(name):
    yt, yp, ref = CASES[name]
    got = L.get(name)(yt, yp)
    np.testing.assert_allclose(got, ref(yt.astype(np.float64), yp.astype(np.float32).astype(
        np.float64)), rtol=2e-5, atol=2e-6)


def test_keras_documented_examples():
    np.testing.assert_allclose(L.categorical_crossentropy([[0, 1, 0], [0, 0, 1]],
                                                          [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]),
                               [0.0513, 2.303], atol=1e-3)
    np.testing.assert_allclose(L.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]),
                               [0.916, 0.714], atol=1e-3)
    assert abs(L.Huber()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]) - 0.155) < 1e-6
    assert abs(L.LogCosh()([[0., 1.], [0., 0.]], [[1., 1.], [0., 0.]]) - 0.108) < 1e-3
    np.testing.assert_allclose(L.cosine_similarity([[0., 1.], [1., 1.], [1., 1.]],
                                                   [[1., 0.], [1., 1.], [-1., -1.]]),
                               [0, -1, 1], atol=1e-6)


def test_from_logits_and_label_smoothing():
    got = L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(ONEHOT, LOGITS)
    smooth = ONEHOT * 0.9 + 0.1 / 4
    np.testing.assert_allclose(got, (-(smooth * log_softmax(LOGITS)).sum(-1)).mean(), rtol=1e-5)
    got = L.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)(BIN, LOGITS)
    t = BIN * 0.8 + 0.1
    ref = (np.maximum(LOGITS, 0) - LOGITS * t + np.log1p(np.exp(-np.abs(LOGITS)))).mean()
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    got = L.SparseCategoricalCrossentropy(from_logits=True)(LABELS[:, None], LOGITS)
    np.testing.assert_allclose(got, (-log_softmax(LOGITS)[np.arange(6), LABELS]).mean(), rtol=1e-5)


def test_softmax_and_sigmoid_outputs_use_their_logits():
    """Keras' TF backend (_get_logits): a loss on a softmax/sigmoid result with
    from_logits=False is computed from the logits -- stable even when p underflows."""
    z = np.array([[0.0, 200.0, -200.0]], np.float32)
    g = Graph("ce")
    zi = g.add_input("z", TensorType((1, 3)))
    with g.building():
        p = g.op("softmax", zi, axis=-1)
        ce = L.categorical_crossentropy(g.constant(np.array([[0, 0, 1.0]], np.float32)), p)
        s = g.op("sigmoid", zi)
        bce = L.binary_crossentropy(g.constant(np.array([[1, 0, 1.0]], np.float32)), s)
    g.set_outputs([ce, bce])
    ce_v, bce_v = kiln.interpret(g, z)
    np.testing.assert_allclose(ce_v, [400.0], rtol=1e-6)            # not -log(1e-7) = 16.1
    np.testing.assert_allclose(bce_v, [(np.log(2) + 200 + 200) / 3], rtol=1e-6)


def test_reductions_and_sample_weights():
    sw = np.array([1, 0, 2, 1, 0, 0.5])
    per = ((YT - YP) ** 2).mean(-1)
    mse = L.MeanSquaredError
    np.testing.assert_allclose(mse()(YT, YP, sample_weight=sw), (per * sw).sum() / 6, rtol=1e-5)
    np.testing.assert_allclose(mse(reduction="sum")(YT, YP, sample_weight=sw), (per * sw).sum(),
                               rtol=1e-5)
    np.testing.assert_allclose(mse(reduction="mean_with_sample_weight")(YT, YP, sample_weight=sw),
                               (per * sw).sum() / sw.sum(), rtol=1e-5)
    np.testing.assert_allclose(mse(reduction=None)(YT, YP), per, rtol=1e-5)
    # rank-1 targets against (N, 1) outputs are expanded (Keras squeeze_or_expand)
    np.testing.assert_allclose(mse()(YT[:, 0], YP[:, :1]), ((YT[:, 0] - YP[:, 0]) ** 2).mean(),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        mse(reduction="avg")


def test_names_classes_and_errors():
    assert L.get("mse") is L.mean_squared_error and L.get("MAE") is L.mean_absolute_error
    assert isinstance(L.get("Huber"), L.Huber) and L.Huber(2.5).delta == 2.5
    assert L.CategoricalCrossentropy().name == "categorical_crossentropy"
    assert L.SparseCategoricalCrossentropy(from_logits=True).get_config()["from_logits"] is True
    with pytest.raises(ValueError, match="Could not interpret loss"):
        L.get("nope")
    with pytest.raises(kiln.ir.OpTypeError, match="same shape"):
        L.categorical_crossentropy(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(kiln.ir.OpTypeError, match="do not fit"):
        L.sparse_categorical_crossentropy(np.ones((2, 3)), np.ones((2, 4)))
