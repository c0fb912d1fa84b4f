"""fit / evaluate / train_on_batch / test_on_batch: Keras semantics end to end."""
import numpy as np
import pytest

import kiln
from kiln import layers

from . import refs

rng = np.random.default_rng(5)
X = rng.normal(size=(50, 4)).astype(np.float32)
Y = (X @ rng.normal(size=(4, 1)) + 0.5).astype(np.float32)


def regressor(lr=0.05):
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(8, activation="relu"),
                         layers.Dense(1)])
    m.compile(optimizer=kiln.optimizers.SGD(learning_rate=lr), loss="mse", metrics=["mae"])
    return m


def forward(ws, x):
    w1, b1, w2, b2 = ws
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


def test_fit_history_partial_batches_evaluate_and_weights():
    m = regressor()
    w0 = m.get_weights()
    before = m.evaluate(X, Y, verbose=0)
    assert isinstance(before, list) and len(before) == 2
    pred = forward(w0, X.astype(np.float64))
    assert before[0] == pytest.approx(((pred - Y) ** 2).mean(), rel=1e-5)
    assert before[1] == pytest.approx(np.abs(pred - Y).mean(), rel=1e-5)

    hist = m.fit(X, Y, batch_size=16, epochs=3, verbose=0)     # 16+16+16+2: the last is partial
    assert hist is m.history
    assert hist.params == {"verbose": 0, "epochs": 3, "steps": 4}
    assert list(hist.history) == ["loss", "mae"] and len(hist.history["loss"]) == 3
    assert hist.epoch == [0, 1, 2]
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    step = m._train_step

    # the Variables hold the trained weights; predict and evaluate agree with numpy on them
    w = m.get_weights()
    assert not np.allclose(w[0], w0[0])
    np.testing.assert_allclose(m.predict(X, verbose=0), forward(w, X), rtol=1e-5, atol=1e-6)
    d = m.evaluate(X, Y, verbose=0, return_dict=True, batch_size=7)
    assert list(d) == ["loss", "mae"]
    assert d["loss"] == pytest.approx(((forward(w, X.astype(np.float64)) - Y) ** 2).mean(), rel=1e-5)

    # set_weights between fits is honoured without recompiling
    m.set_weights(w0)
    assert m.evaluate(X, Y, verbose=0) == pytest.approx(before, rel=1e-6)
    m.fit(X, Y, batch_size=50, epochs=1, verbose=0)
    assert m._train_step is step
    assert m.optimizer.iterations == 3 * 4 + 1


def test_validation_split_data_and_freq():
    m = regressor()
    h = m.fit(X, Y, batch_size=8, epochs=2, validation_split=0.2, verbose=0, shuffle=False)
    assert list(h.history) == ["loss", "mae", "val_loss", "val_mae"]
    assert h.params["steps"] == 5           # 40 training samples
    last = m.evaluate(X[40:], Y[40:], verbose=0, batch_size=8)   # the LAST 20% is validation
    assert h.history["val_loss"][-1] == pytest.approx(last[0], rel=1e-6)
    sw = np.linspace(0, 1, 10).astype(np.float32)
    h = m.fit(X[:40], Y[:40], epochs=4, validation_data=(X[40:], Y[40:], sw), validation_freq=2,
              verbose=0)
    assert len(h.history["loss"]) == 4 and len(h.history["val_loss"]) == 2
    assert h.history["val_loss"][-1] == pytest.approx(
        m.evaluate(X[40:], Y[40:], sample_weight=sw, verbose=0)[0], rel=1e-6)
    h = m.fit(X, Y, epochs=3, initial_epoch=1, steps_per_epoch=2, batch_size=8, verbose=0)
    assert h.epoch == [1, 2] and h.params["steps"] == 2


def test_train_and_test_on_batch_accumulate_until_reset():
    m = regressor(lr=0.0)
    pred = forward(m.get_weights(), X.astype(np.float64))
    per = ((pred - Y) ** 2)[:, 0]
    a = m.train_on_batch(X[:10], Y[:10])
    b = m.train_on_batch(X[10:40], Y[10:40], return_dict=True)
    assert a[0] == pytest.approx(per[:10].mean(), rel=1e-5)
    assert b["loss"] == pytest.approx(per[:40].mean(), rel=1e-5)    # batch-size weighted mean
    m.reset_metrics()
    assert m.train_on_batch(X[40:], Y[40:])[0] == pytest.approx(per[40:].mean(), rel=1e-5)
    t = m.test_on_batch(X, Y, sample_weight=np.arange(50, dtype=np.float32))
    assert t[0] == pytest.approx((per * np.arange(50)).sum() / 50, rel=1e-5)
    np.testing.assert_allclose(m.predict_on_batch(X[:3]), pred[:3], rtol=1e-5)


def test_classification_accuracy_class_weight_and_scalar_evaluate():
    x = rng.normal(size=(60, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    m = kiln.Sequential([kiln.Input(shape=(5,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer=kiln.optimizers.SGD(learning_rate=0.0),
              loss="sparse_categorical_crossentropy", metrics=["accuracy", "acc"])
    z = x.astype(np.float64) @ m.get_weights()[0] + m.get_weights()[1]
    per = -refs.log_softmax(z)[np.arange(60), labels]
    cw = {0: 1.0, 1: 3.0, 2: 0.5}
    out = m.train_on_batch(x, labels, class_weight=cw, return_dict=True)
    assert list(out) == ["loss", "accuracy", "acc"]
    w = np.array([cw[c] for c in labels])
    assert out["loss"] == pytest.approx((per * w).mean(), rel=1e-5)
    assert out["accuracy"] == pytest.approx((z.argmax(1) == labels).mean())   # unweighted
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(m.evaluate(x, labels[:, None], verbose=0), float)  # only the loss


class Batches:
    """A re-iterable dataset of (x, y) batches with a length (as [data]'s datasets)."""

    def __init__(self, x, y, bs):
        self.x, self.y, self.bs = x, y, bs

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __iter__(self):
        for i in range(0, len(self.x), self.bs):
            yield self.x[i:i + self.bs], self.y[i:i + self.bs]


def test_iterables_of_batches():
    m = regressor(lr=0.0)
    ref = m.evaluate(X, Y, batch_size=10, verbose=0)
    assert m.evaluate(Batches(X, Y, 10), verbose=0) == pytest.approx(ref, rel=1e-6)
    h = m.fit(Batches(X, Y, 10), epochs=2, verbose=0, validation_data=Batches(X, Y, 25))
    assert h.params["steps"] == 5 and h.history["val_loss"][0] == pytest.approx(ref[0], rel=1e-6)

    def gen():
        while True:
            for i in range(0, 50, 10):
                yield X[i:i + 10], Y[i:i + 10], np.ones(10, np.float32)
    h = m.fit(gen(), steps_per_epoch=5, epochs=3, verbose=0)
    assert len(h.epoch) == 3 and h.history["loss"][0] == pytest.approx(ref[0], rel=1e-6)
    finite = (b for b in Batches(X, Y, 10))
    with pytest.warns(UserWarning, match="ran out"):
        h = m.fit(finite, epochs=3, verbose=0)
    assert len(h.epoch) == 1
    with pytest.raises(ValueError, match="must not be given"):
        m.fit(Batches(X, Y, 10), Y)


def test_custom_loss_and_metric_functions_written_with_kiln_ops():
    def scaled_mse(y_true, y_pred):        # per-sample values, as a Keras loss function
        return kiln.ops.mean(kiln.ops.multiply(kiln.ops.subtract(y_true, y_pred),
                                               kiln.ops.subtract(y_true, y_pred)), axis=-1)

    def max_err(y_true, y_pred):
        return kiln.ops.max(kiln.ops.maximum(kiln.ops.subtract(y_true, y_pred),
                                             kiln.ops.subtract(y_pred, y_true)), axis=-1)
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(1)])
    m.compile(optimizer=kiln.optimizers.SGD(0.0), loss=scaled_mse, metrics=[max_err])
    p = m.predict(X, verbose=0)
    d = m.evaluate(X, Y, verbose=0, return_dict=True, batch_size=50)
    assert list(d) == ["loss", "max_err"]
    assert d["loss"] == pytest.approx(((p - Y) ** 2).mean(), rel=1e-5)
    assert d["max_err"] == pytest.approx(np.abs(p - Y).mean(), rel=1e-5)
