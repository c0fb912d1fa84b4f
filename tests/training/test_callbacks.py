"""Callbacks: hooks, EarlyStopping, ModelCheckpoint, CSVLogger, TerminateOnNaN, LR
callbacks, and the progress bar's exact text."""
import io
import re

import numpy as np
import pytest

import kiln
from kiln import callbacks as C
from kiln import layers

rng = np.random.default_rng(7)
X = rng.normal(size=(40, 3)).astype(np.float32)
Y = (X.sum(1, keepdims=True) * 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    """One compiled model shared by the tests here (SGD with a settable learning rate)."""
    kiln.utils.set_random_seed(1)
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dense(1)])
    m.compile(optimizer=kiln.optimizers.SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
    m.fit(X, Y, epochs=1, verbose=0)
    return m


class Recorder(C.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            calls = object.__getattribute__(self, "calls")
            return lambda *a, **k: calls.append(name)
        return object.__getattribute__(self, name)


def test_hook_order_and_params(model):
    r = Recorder()
    model.fit(X, Y, batch_size=20, epochs=2, validation_data=(X, Y), verbose=0, callbacks=[r])
    train = ["on_train_batch_begin", "on_train_batch_end"] * 2
    val = ["on_test_begin"] + ["on_test_batch_begin", "on_test_batch_end"] * 2 + ["on_test_end"]
    epoch = ["on_epoch_begin", *train, *val, "on_epoch_end"]
    assert r.calls == ["on_train_begin", *epoch, *epoch, "on_train_end"]
    assert r.params == {"verbose": 0, "epochs": 2, "steps": 2}
    assert r.model is model


def scripted(values):
    """A callback writing a scripted 'score' into each epoch's logs (before the others)."""
    return C.LambdaCallback(on_epoch_end=lambda e, logs: logs.__setitem__("score", values[e]))


def test_early_stopping_stops_and_restores_best_weights(model):
    model.optimizer.learning_rate = 0.0     # the same batches every epoch: the same loss, bit for bit
    h = model.fit(X, Y, epochs=10, verbose=0, shuffle=False,
                  callbacks=[C.EarlyStopping(monitor="loss", patience=1)])
    assert len(h.epoch) == 2          # no improvement at epoch 1: stop (Keras: epoch > 0)
    model.optimizer.learning_rate = 0.05
    seen = []
    keep = C.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.get_weights()))
    es = C.EarlyStopping(monitor="score", patience=2, restore_best_weights=True, mode="min")
    h = model.fit(X, Y, epochs=10, verbose=0, callbacks=[scripted([3, 1, 2, 4, 5, 0, 0, 0, 0, 0]),
                                                           keep, es])
    assert h.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3 and es.best_epoch == 1
    for a, b in zip(model.get_weights(), seen[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(seen[1][0], seen[3][0])
    # training continues from the restored weights
    h = model.fit(X, Y, epochs=1, verbose=0)
    assert np.isfinite(h.history["loss"][0])


def test_model_checkpoint_writes_weights(model, tmp_path):
    path = str(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.npz")
    h = model.fit(X, Y, epochs=3, verbose=0, callbacks=[C.ModelCheckpoint(path, monitor="loss",
                                                                          save_weights_only=True)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"ckpt-{e + 1:02d}-{loss:.3f}.npz" for e, loss in enumerate(h.history["loss"])]
    final = model.get_weights()
    model.set_weights([np.zeros_like(w) for w in final])
    C.load_npz_weights(model, str(tmp_path / files[-1]))
    for a, b in zip(model.get_weights(), final):
        np.testing.assert_array_equal(a, b)
    best = str(tmp_path / "best.npz")
    model.fit(X, Y, epochs=4, verbose=0, callbacks=[
        scripted([5, 2, 3, 1]), C.ModelCheckpoint(best, monitor="score", save_best_only=True,
                                                  mode="min", verbose=0)])
    assert (tmp_path / "best.npz").exists()
    with pytest.raises(ValueError, match="must end in"):
        C.ModelCheckpoint(str(tmp_path / "w.txt"))


def test_csv_logger_rows(model, tmp_path):
    f = tmp_path / "log.csv"
    h = model.fit(X, Y, epochs=2, verbose=0, callbacks=[C.CSVLogger(str(f))])
    rows = f.read_text().splitlines()
    assert rows[0] == "epoch,loss,mae,val_loss,val_mae"     # Keras adds val_ columns
    for e, row in enumerate(rows[1:]):
        assert row == f"{e},{h.history['loss'][e]},{h.history['mae'][e]},NA,NA"
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[C.CSVLogger(str(f), append=True)])
    assert len(f.read_text().splitlines()) == 4


def test_learning_rate_callbacks(model):
    sched = C.LearningRateScheduler(lambda epoch, lr: 0.01 * (epoch + 1))
    h = model.fit(X, Y, epochs=3, verbose=0, callbacks=[sched])
    assert h.history["learning_rate"] == pytest.approx([0.01, 0.02, 0.03])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.03)
    model.optimizer.learning_rate = 0.0          # nothing improves: the plateau cuts the rate
    red = C.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_lr=0.0)
    h = model.fit(X, Y, epochs=3, verbose=0, callbacks=[red])
    assert h.history["learning_rate"] == [0.0, 0.0, 0.0]
    model.optimizer.learning_rate = 0.04
    h = model.fit(X, Y, epochs=3, verbose=0, callbacks=[scripted([1, 1, 1]),
                                                       C.ReduceLROnPlateau("score", 0.5, 1)])
    assert h.history["learning_rate"] == pytest.approx([0.04, 0.04, 0.02])   # logged, then cut
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    model.optimizer.learning_rate = 0.05


def test_terminate_on_nan_stops_cleanly():
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dense(1)])
    m.compile(optimizer=kiln.optimizers.SGD(learning_rate=1e30), loss="mse")
    h = m.fit(X * 1e10, Y, batch_size=8, epochs=5, verbose=0, callbacks=[C.TerminateOnNaN()])
    assert len(h.epoch) == 1 and not np.isfinite(h.history["loss"][0])
    with pytest.warns(RuntimeWarning, match="loss became"):
        m.fit(X * 1e10, Y, epochs=1, verbose=0)
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        m.fit(X * 1e10, Y, epochs=1, verbose=0, callbacks=[C.TerminateOnNaN(raise_error=True)])


BAR = "\u2501" * 20
NUM = r"\d+\.\d{4}"


def test_progress_bar_text(model, capsys):
    h = model.fit(X, Y, batch_size=10, epochs=2, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2" and len(out) == 4
    for e, line in ((0, out[1]), (1, out[3])):
        assert re.fullmatch(rf"4/4 {BAR} \d+s \d+(us|ms|s)/step - loss: {NUM} - mae: {NUM}", line)
        assert f"loss: {h.history['loss'][e]:.4f} - mae: {h.history['mae'][e]:.4f}" in line
    h = model.fit(X, Y, batch_size=10, epochs=1, verbose=2, validation_data=(X, Y))
    line, = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"4/4 - \d+s - \d+(us|ms|s)/step - loss: {NUM} - mae: {NUM} - "
                        rf"val_loss: {NUM} - val_mae: {NUM}", line)
    res = model.evaluate(X, Y, batch_size=40, verbose=1)
    line, = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"1/1 {BAR} \d+s \d+(us|ms|s)/step - loss: {res[0]:.4f} - "
                        rf"mae: {res[1]:.4f}", line)


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_updates_in_place(model, monkeypatch):
    out = Tty()
    monkeypatch.setattr("sys.stdout", out)
    h = model.fit(X, Y, batch_size=10, epochs=1, verbose=1)
    text = out.getvalue()
    assert "\r" in text and "\x1b[1m4/4\x1b[0m " in text and f"\x1b[32m{BAR}\x1b[0m" in text
    assert "\x1b[1m1/4\x1b[0m \x1b[32m" in text           # the first step, with ETA, drawn
    final = re.sub(r"\x1b\[\d+m", "", text.split("\r")[-1])
    assert re.fullmatch(rf"4/4 {BAR} \d+s \d+(us|ms|s)/step - loss: {NUM} - mae: {NUM}\s*\n", final)
    assert f"loss: {h.history['loss'][0]:.4f}" in final
