"""Metrics vs numpy formulas, streaming over batches (state accumulates until reset)."""
import numpy as np
import pytest

from kiln import metrics as Mt

rng = np.random.default_rng(1)
P = rng.random((10, 5)).astype(np.float32)
P /= P.sum(-1, keepdims=True)
LAB = rng.integers(0, 5, 10)
OH = np.eye(5)[LAB]
B_TRUE = rng.integers(0, 2, (10, 1)).astype(np.float32)
B_PRED = rng.random((10, 1)).astype(np.float32)
SW = rng.random(10).astype(np.float32)


def streamed(metric, yt, yp, sw=None):
    """Feed two batches; return the result (and check reset_state clears it)."""
    for s in (slice(0, 6), slice(6, 10)):
        metric.update_state(yt[s], yp[s], None if sw is None else sw[s])
    out = float(metric.result())
    metric.reset_state()
    assert float(metric.result()) == 0.0
    return out


def wmean(v, sw=None):
    return float((v * sw).sum() / sw.sum()) if sw is not None else float(v.mean())


@pytest.mark.parametrize("sw", [None, SW], ids=["unweighted", "weighted"])
def test_accuracies(sw):
    assert streamed(Mt.CategoricalAccuracy(), OH, P, sw) == pytest.approx(
        wmean(P.argmax(1) == LAB, sw), rel=1e-6)
    assert streamed(Mt.SparseCategoricalAccuracy(), LAB[:, None], P, sw) == pytest.approx(
        wmean(P.argmax(1) == LAB, sw), rel=1e-6)
    assert streamed(Mt.BinaryAccuracy(), B_TRUE, B_PRED, sw) == pytest.approx(
        wmean(((B_PRED > 0.5) == B_TRUE)[:, 0], sw), rel=1e-6)
    assert streamed(Mt.BinaryAccuracy(threshold=0.7), B_TRUE, B_PRED, sw) == pytest.approx(
        wmean(((B_PRED > 0.7) == B_TRUE)[:, 0], sw), rel=1e-6)
    higher = (P > P[np.arange(10), LAB][:, None]).sum(1)
    for k in (1, 2, 3):
        assert streamed(Mt.TopKCategoricalAccuracy(k=k), OH, P, sw) == pytest.approx(
            wmean(higher < k, sw), rel=1e-6)
        assert streamed(Mt.SparseTopKCategoricalAccuracy(k=k), LAB, P, sw) == pytest.approx(
            wmean(higher < k, sw), rel=1e-6)


def test_regression_metrics():
    yt, yp = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    assert streamed(Mt.MeanSquaredError(), yt, yp) == pytest.approx(((yt - yp) ** 2).mean(), rel=1e-5)
    assert streamed(Mt.MeanAbsoluteError(), yt, yp, SW) == pytest.approx(
        wmean(np.abs(yt - yp).mean(1), SW), rel=1e-5)
    assert streamed(Mt.RootMeanSquaredError(), yt, yp) == pytest.approx(
        np.sqrt(((yt - yp) ** 2).mean()), rel=1e-5)
    m = Mt.get("mse")
    assert m.name == "mse"
    assert streamed(m, yt, yp) == pytest.approx(((yt - yp) ** 2).mean(), rel=1e-5)


def test_mean_and_sum_follow_keras_examples():
    m = Mt.Mean()
    m.update_state([1, 3, 5, 7])
    assert float(m.result()) == 4.0
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert float(m.result()) == pytest.approx(20 / 6)
    s = Mt.Sum()
    s.update_state([1, 3, 5, 7])
    assert float(s.result()) == 16.0


def test_precision_recall_and_counts():
    yt = np.array([0, 1, 1, 1, 0, 1, 0, 0], np.float32)
    yp = np.array([0.9, 0.2, 0.6, 0.7, 0.1, 0.51, 0.5, 0.8], np.float32)
    pred = yp > 0.5
    tp, fp = (pred & (yt == 1)).sum(), (pred & (yt == 0)).sum()
    fn, tn = (~pred & (yt == 1)).sum(), (~pred & (yt == 0)).sum()
    for cls, want in ((Mt.Precision, tp / (tp + fp)), (Mt.Recall, tp / (tp + fn)),
                      (Mt.TruePositives, tp), (Mt.FalsePositives, fp),
                      (Mt.TrueNegatives, tn), (Mt.FalseNegatives, fn)):
        m = cls()
        m.update_state(yt[:5], yp[:5])
        m.update_state(yt[5:], yp[5:])
        assert float(m.result()) == pytest.approx(float(want)), cls.__name__
    m = Mt.Precision()
    m.update_state([0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0])
    assert float(m.result()) == 1.0
    assert float(Mt.Recall().result()) == 0.0           # no data: 0, not NaN


def numpy_auc(yt, yp, n=200):
    th = np.array([-1e-7] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1 + 1e-7])
    pos = yp[:, None] > th[None, :]
    lab = (yt != 0)[:, None]
    tp, fp = (pos & lab).sum(0), (pos & ~lab).sum(0)
    fn, tn = (~pos & lab).sum(0), (~pos & ~lab).sum(0)
    tpr = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0)
    fpr = np.where(fp + tn > 0, fp / np.maximum(fp + tn, 1), 0)
    return ((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2).sum()


def test_auc_roc():
    yt = rng.integers(0, 2, 300).astype(np.float32)
    yp = np.clip(yt * 0.3 + rng.random(300) * 0.7, 0, 1).astype(np.float32)
    m = Mt.AUC()
    m.update_state(yt[:150], yp[:150])
    m.update_state(yt[150:], yp[150:])
    assert float(m.result()) == pytest.approx(numpy_auc(yt, yp), rel=1e-5)
    m = Mt.AUC(num_thresholds=3)
    m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
    assert float(m.result()) == pytest.approx(0.75)
    with pytest.raises(NotImplementedError, match="PR"):
        Mt.AUC(curve="PR")


def test_accuracy_resolution_follows_keras():
    assert isinstance(Mt.resolve_accuracy("accuracy", (None, 1), (None, 1)), Mt.BinaryAccuracy)
    assert isinstance(Mt.resolve_accuracy("acc", (None,), (None, 10)), Mt.SparseCategoricalAccuracy)
    assert isinstance(Mt.resolve_accuracy("accuracy", (None, 1), (None, 10)),
                      Mt.SparseCategoricalAccuracy)
    m = Mt.resolve_accuracy("acc", (None, 10), (None, 10))
    assert isinstance(m, Mt.CategoricalAccuracy) and m.name == "acc"
    assert isinstance(Mt.get("auc"), Mt.AUC) and isinstance(Mt.get("Precision"), Mt.Precision)
    with pytest.raises(ValueError, match="Could not interpret metric"):
        Mt.get("nope")
