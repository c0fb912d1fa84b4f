"""``model.compile(..., target="cuda")``: fit / evaluate / predict / train_on_batch /
test_on_batch on the device (numba's CUDA simulator here), step by step against the
same model trained on the CPU. Shapes are tiny: the simulator runs one Python thread
per CUDA thread."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln
from kiln import callbacks, layers

RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(scope="module", autouse=True)
def _fast_simulator_threads():
    """The simulator polls its threads in a busy loop that holds the GIL for the whole
    switch interval (5 ms by default); a shorter one makes a launch several times faster."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


def _mlp():
    return kiln.Sequential([kiln.Input(shape=(8,)), layers.Dense(16, activation="relu"),
                            layers.Dense(3, activation="softmax")])


def _cnn():
    return kiln.Sequential([kiln.Input(shape=(6, 6, 1)), layers.Conv2D(2, 3, activation="relu"),
                            layers.MaxPooling2D(2), layers.Flatten(),
                            layers.Dense(3, activation="softmax")])


def _pair(make, optimizer, **kw):
    """The same model (same initial weights) compiled for the CPU and for CUDA."""
    cpu, gpu = make(), make()
    gpu.set_weights(cpu.get_weights())
    for m, target in ((cpu, "cpu"), (gpu, "cuda")):
        m.compile(optimizer=optimizer, loss="categorical_crossentropy", target=target, **kw)
    return cpu, gpu


def _close_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for i, (p, q) in enumerate(zip(wa, wb)):
        np.testing.assert_allclose(q, p, rtol=RTOL, atol=ATOL, err_msg=f"weight {i}")


def _close_logs(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=RTOL, atol=ATOL, err_msg=k)


class _Record(callbacks.Callback):
    """Per-batch logs, per-epoch logs, and the model's weights after the first batch."""

    def __init__(self):
        super().__init__()
        self.batches, self.epochs, self.mid = [], [], None

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs))
        if self.mid is None:
            self.mid = self.model.get_weights()    # mid-fit: pulled from the device

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


rng = np.random.default_rng(7)
X = rng.standard_normal((4, 8)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[[0, 2, 1, 2]]
XI = rng.random((3, 6, 6, 1)).astype(np.float32)
YI = np.eye(3, dtype=np.float32)[[1, 0, 2]]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_fit_evaluate_predict_match_the_cpu(cuda, optimizer):
    """2 epochs x 2 batches: per-step logs (the metric accumulators reset on the device at
    each epoch), weights read mid-fit, final weights, evaluate, predict."""
    cpu, gpu = _pair(_mlp, optimizer, metrics=["accuracy"])
    rec = {}
    for name, m in (("cpu", cpu), ("cuda", gpu)):
        rec[name] = _Record()
        m.fit(X, Y, batch_size=2, epochs=2, shuffle=False, verbose=0, callbacks=[rec[name]])
    step = gpu._train_step
    assert step.train_exe.target == "cuda" and step.eval_exe is None
    assert len(rec["cuda"].batches) == 4
    for a, b in zip(rec["cpu"].batches + rec["cpu"].epochs, rec["cuda"].batches + rec["cuda"].epochs):
        _close_logs(a, b)
    for p, q in zip(rec["cpu"].mid, rec["cuda"].mid):
        np.testing.assert_allclose(q, p, rtol=RTOL, atol=ATOL)
    assert not np.allclose(rec["cuda"].mid[0], gpu.get_weights()[0])   # it kept training
    _close_weights(cpu, gpu)
    assert gpu.optimizer.iterations == cpu.optimizer.iterations == 4
    ev_cpu = cpu.evaluate(X, Y, batch_size=4, verbose=0, return_dict=True)
    ev_gpu = gpu.evaluate(X, Y, batch_size=4, verbose=0, return_dict=True)
    assert step.eval_exe.target == "cuda"
    _close_logs(ev_cpu, ev_gpu)
    p = gpu.predict(X, batch_size=4, verbose=0)
    assert gpu._exe.target == "cuda"
    np.testing.assert_allclose(p, cpu.predict(X, batch_size=4, verbose=0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cnn_train_on_batch_matches_the_cpu(cuda, optimizer):
    cpu, gpu = _pair(_cnn, optimizer)
    for _ in range(3):
        a, b = cpu.train_on_batch(XI, YI), gpu.train_on_batch(XI, YI)
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)
    _close_weights(cpu, gpu)
    np.testing.assert_allclose(gpu.test_on_batch(XI, YI), cpu.test_on_batch(XI, YI),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gpu.predict(XI, verbose=0), cpu.predict(XI, verbose=0),
                               rtol=RTOL, atol=ATOL)


def test_set_weights_between_steps_is_honoured(cuda):
    """set_weights on the model side is uploaded before the next step; the eval step
    takes the train step's weights device-to-device."""
    cpu, gpu = _pair(_mlp, "sgd")
    np.testing.assert_allclose(gpu.train_on_batch(X, Y), cpu.train_on_batch(X, Y), rtol=RTOL)
    new = [w * np.float32(0.5) + np.float32(0.1) for w in cpu.get_weights()]
    cpu.set_weights(new)
    gpu.set_weights(new)
    step = gpu._train_step
    np.testing.assert_allclose(gpu.train_on_batch(X, Y), cpu.train_on_batch(X, Y), rtol=RTOL)
    assert gpu._train_step is step                  # pushed, not rebuilt
    _close_weights(cpu, gpu)
    np.testing.assert_allclose(gpu.test_on_batch(X, Y), cpu.test_on_batch(X, Y), rtol=RTOL)
    name = next(iter(step.train_exe.params))
    with pytest.raises(ValueError, match="read-only"):  # params are downloads, not buffers
        np.copyto(step.train_exe.params[name], 0)


def test_bad_target_is_a_clear_error():
    m = _mlp()
    for bad in ("gpu", "CUDA", None):
        with pytest.raises(ValueError, match=r"unknown target .*'cpu', 'cuda'"):
            m.compile(optimizer="sgd", loss="mse", target=bad)


def test_cuda_without_gpu_or_simulator_is_cuda_unavailable():
    code = ("import kiln\nfrom kiln.codegen.cuda.device import CudaUnavailable\n"
            "m = kiln.Sequential([kiln.Input(shape=(2,)), kiln.layers.Dense(1)])\n"
            "try:\n    m.compile(optimizer='sgd', loss='mse', target='cuda')\n"
            "except CudaUnavailable as e:\n    print('UNAVAILABLE', e)\nelse:\n    print('COMPILED')\n")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    if "COMPILED" in r.stdout:
        pytest.skip("this machine has a GPU")
    assert "UNAVAILABLE target='cuda'" in r.stdout     # a no-GPU or no-numba.cuda message
