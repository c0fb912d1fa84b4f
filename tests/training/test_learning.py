"""It learns: real data (the bundled digits) and a regression against least squares."""
import numpy as np
import pytest

import kiln
from kiln import layers


def digits(flat=True):
    (xt, yt), (xv, yv) = kiln.datasets.digits.load_data()
    shape = (-1, 64) if flat else (-1, 8, 8, 1)
    return (xt.reshape(shape).astype(np.float32) / 16, yt), (xv.reshape(shape).astype(np.float32) / 16, yv)


def test_mlp_on_digits_reaches_95_percent():
    kiln.utils.set_random_seed(1)
    (xt, yt), (xv, yv) = digits()
    m = kiln.Sequential([kiln.Input(shape=(64,)), layers.Dense(64, activation="relu"),
                         layers.Dense(10, activation="softmax")])
    m.compile(optimizer=kiln.optimizers.Adam(learning_rate=0.003),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(xt, yt, batch_size=32, epochs=20, validation_data=(xv, yv), verbose=0)
    loss, acc = m.evaluate(xv, yv, verbose=0)
    assert acc >= 0.95, h.history
    assert h.history["val_accuracy"][-1] == pytest.approx(acc)
    assert (m.predict(xv, verbose=0).argmax(1) == yv).mean() == pytest.approx(acc)


def test_regression_mlp_reaches_least_squares():
    """Noisy linear data: the MLP's MSE on its training data is within 5% of the exact
    least-squares fit's (the best any linear model reaches there)."""
    kiln.utils.set_random_seed(2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (x @ rng.normal(size=(5, 1)) + 0.3 + 0.1 * rng.normal(size=(600, 1))).astype(np.float32)
    a = np.c_[x, np.ones(len(x))].astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, y.astype(np.float64), rcond=None)
    ls_mse = float(((a @ coef - y) ** 2).mean())
    m = kiln.Sequential([kiln.Input(shape=(5,)), layers.Dense(32, activation="relu"),
                         layers.Dense(1)])
    m.compile(optimizer=kiln.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    m.fit(x, y, batch_size=32, epochs=60, verbose=0,
          callbacks=[kiln.callbacks.ReduceLROnPlateau("loss", factor=0.3, patience=3)])
    mse = m.evaluate(x, y, verbose=0)[0]
    assert mse <= 1.05 * ls_mse, (mse, ls_mse)


def test_lstm_learns_a_sequence_task():
    """Whether a sequence's sum is positive: the answer needs memory across all steps
    (backprop through time inside the scan)."""
    kiln.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 12, 1)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.float32)[:, None]
    m = kiln.Sequential([kiln.Input(shape=(12, 1)), layers.LSTM(16),
                         layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer=kiln.optimizers.Adam(0.01), loss="binary_crossentropy",
              metrics=["accuracy"])
    m.fit(x[:400], y[:400], batch_size=32, epochs=15, verbose=0)
    assert m.evaluate(x[400:], y[400:], verbose=0)[1] >= 0.9


@pytest.mark.slow
def test_seed_cnn_on_digits_reaches_97_percent():
    """The seed's CNN program (adapted to 8x8 inputs with padding="same"), Adam(lr=0.001),
    categorical crossentropy, metrics=['accuracy'], validation_data, evaluate."""
    kiln.utils.set_random_seed(1)
    (xt, yt), (xv, yv) = digits(flat=False)
    yt1, yv1 = np.eye(10, dtype=np.float32)[yt], np.eye(10, dtype=np.float32)[yv]
    m = kiln.Sequential([kiln.Input(shape=(8, 8, 1)),
                         layers.Conv2D(32, (3, 3), activation="relu", padding="same"),
                         layers.MaxPooling2D((2, 2)),
                         layers.Conv2D(64, (3, 3), activation="relu", padding="same"),
                         layers.MaxPooling2D((2, 2)),
                         layers.Flatten(), layers.Dropout(0.5),
                         layers.Dense(10, activation="softmax")])
    m.compile(optimizer=kiln.optimizers.Adam(lr=0.001), loss="categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(xt, yt1, batch_size=32, epochs=20, validation_data=(xv, yv1), verbose=0)
    loss, acc = m.evaluate(xv, yv1, verbose=0)
    assert acc >= 0.97, acc
