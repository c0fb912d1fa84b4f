"""Loss-curve parity: an MLP and a small CNN trained 20 steps with SGD and with Adam
(fit, shuffle=False) give the losses of a float64 numpy implementation of the same math,
from the same initial weights, within 1e-4 relative."""
import numpy as np
import pytest

import kiln
from kiln import layers

from . import refs

BATCH, STEPS = 16, 20


def running_means(losses):
    return np.cumsum(losses) / np.arange(1, len(losses) + 1)


def fit_and_record(model, x, y, opt):
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    seen = []
    cb = kiln.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["loss"]))
    hist = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[cb])
    return np.array(seen), hist


def data(shape, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH * STEPS,) + shape).astype(np.float32)
    w = rng.normal(size=(int(np.prod(shape)), classes))
    y = np.eye(classes, dtype=np.float32)[np.argmax(x.reshape(len(x), -1) @ w, axis=1)]
    return x, y


OPTS = {"sgd": (lambda: kiln.optimizers.SGD(learning_rate=0.1), lambda: refs.SGD(0.1)),
        "adam": (lambda: kiln.optimizers.Adam(learning_rate=0.01), lambda: refs.Adam(0.01))}


@pytest.mark.parametrize("opt", sorted(OPTS))
def test_mlp_loss_curve_matches_numpy(opt):
    x, y = data((10,))
    m = kiln.Sequential([kiln.Input(shape=(10,)), layers.Dense(16, activation="relu"),
                         layers.Dense(4, activation="softmax")])
    w0 = m.get_weights()
    seen, hist = fit_and_record(m, x, y, OPTS[opt][0]())
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    losses, ws = refs.train_reference(refs.mlp_loss_grads, w0, OPTS[opt][1](), batches)
    assert len(seen) == STEPS
    np.testing.assert_allclose(seen, running_means(losses), rtol=1e-4)
    assert hist.history["loss"][0] == pytest.approx(losses.mean(), rel=1e-4)
    for got, want in zip(m.get_weights(), ws):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    assert losses[-5:].mean() < losses[:5].mean()      # it learns


@pytest.mark.parametrize("opt", sorted(OPTS))
def test_cnn_loss_curve_matches_numpy(opt):
    x, y = data((6, 6, 2), seed=1)
    m = kiln.Sequential([kiln.Input(shape=(6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                         layers.Flatten(), layers.Dense(4, activation="softmax")])
    w0 = m.get_weights()
    seen, _ = fit_and_record(m, x, y, OPTS[opt][0]())
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    losses, ws = refs.train_reference(refs.cnn_loss_grads, w0, OPTS[opt][1](), batches)
    np.testing.assert_allclose(seen, running_means(losses), rtol=1e-4)
    for got, want in zip(m.get_weights(), ws):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    assert losses[-5:].mean() < losses[:5].mean()      # it learns
