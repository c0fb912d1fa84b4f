"""The target="cuda" executable end to end under the simulator: models compiled once
and run at several batch sizes against the CPU target, a training step with its state
kept on the device, errors, and ``kiln dump --cuda``."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln
from kiln import layers
from kiln.ir import Graph, TensorType

rng = np.random.default_rng(3)


def test_mlp_one_compile_serves_batch_1_and_3(cuda):
    m = kiln.Sequential([kiln.Input(shape=(12,)), layers.Dense(16, activation="relu"),
                         layers.Dense(8, activation="tanh"), layers.Dense(5, activation="softmax")])
    exe = kiln.compile(m, target="cuda")
    cpu = kiln.compile(m)
    x = rng.random((3, 12)).astype(np.float32)
    for n in (1, 3, 2):
        got = exe(x[:n])
        assert got.shape == (n, 5) and got.dtype == np.float32
        np.testing.assert_allclose(got, cpu(x[:n]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, kiln.interpret(exe.graph, x[:n]), rtol=1e-5, atol=1e-6)
    # the kernels: two matmul groups with their bias+activation epilogues, one softmax
    assert [k.shape for k, _ in exe.program.steps] == ["matmul", "matmul", "matmul", "softmax"]
    assert exe._arena_size == exe.program.arena_bytes.evaluate({"N": 3})
    with pytest.raises(ValueError, match="expected shape"):
        exe(np.zeros((2, 11), np.float32))


def test_small_cnn(cuda):
    m = kiln.Sequential([kiln.Input(shape=(6, 6, 2)),
                         layers.Conv2D(3, 3, padding="same", activation="relu"),
                         layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(4)])
    exe = kiln.compile(m, target="cuda")
    cpu = kiln.compile(m)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    for n in (1, 2):
        np.testing.assert_allclose(exe(x[:n]), cpu(x[:n]), rtol=1e-5, atol=1e-5)


def test_multiple_outputs_and_params_api(cuda):
    inp = kiln.Input(shape=(4,))
    h = layers.Dense(3, name="d")(inp)
    m = kiln.Model(inp, [h, layers.Dense(2, name="e")(h)])
    exe = kiln.compile(m, target="cuda")
    x = rng.random((2, 4)).astype(np.float32)
    a, b = exe(x)
    ca, cb = kiln.compile(m)(x)
    np.testing.assert_allclose(a, ca, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, cb, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(exe.params["d.kernel"], m.get_layer("d").get_weights()[0])
    exe.set_param("d.bias", np.ones(3, np.float32))
    a2, _ = exe(x)
    np.testing.assert_allclose(a2, ca - m.get_layer("d").get_weights()[1] + 1, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="d.bias"):
        exe.set_param("d.bias", np.ones(4, np.float32))


def test_training_step_runs_on_the_device(cuda):
    """The compiled training step (forward, loss, backward, SGD/Adam update, metrics) as
    ONE graph: weights, optimizer slots and metric state stay on the device and match
    the CPU target step by step."""
    for opt in ("sgd", "adam"):
        m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(6, activation="relu"),
                             layers.Dense(2)])
        m.compile(optimizer=opt, loss="mse")
        x = rng.random((3, 4)).astype(np.float32)
        y = rng.random((3, 2)).astype(np.float32)
        m.train_on_batch(x, y)
        g = m._train_step.train_graph
        gpu = kiln.compile(g, target="cuda", passes="training")
        cpu = kiln.compile(g, passes="training")
        sw, lr = np.ones(3, np.float32), np.float32(0.05)
        losses = []
        for n in (3, 2):
            a = gpu(x[:n], y[:n], sw[:n], lr)
            b = cpu(x[:n], y[:n], sw[:n], lr)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            losses.append(float(a))
        for k, v in cpu.params.items():
            np.testing.assert_allclose(gpu.params[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_ops_without_a_cuda_kernel_are_named(cuda):
    from kiln.ir.ops.control import build_scan
    g = Graph("nested")                  # a scan inside a scan's body: no CUDA kernel
    x = g.add_input("x", TensorType(("N", 4, 3)))
    s0 = g.add_input("s0", TensorType(("N",)))

    def inner(b, cs, xs, ws):
        s = b.op("add", cs[0], xs[0])
        return [s], [s]

    (s,), _ = build_scan(g, [s0], [x], [], lambda b, cs, xs, ws: (
        build_scan(b, [cs[0]], [xs[0]], [], inner, axis=1)[0], []), axis=1)
    g.set_outputs([s])
    with pytest.raises(NotImplementedError, match=r"no kernel yet for op\(s\): scan .*target='cpu'"):
        kiln.compile(g, target="cuda")


def test_random_uniform_is_bit_identical_to_the_cpu(cuda):
    g = Graph("r")
    x = g.add_input("x", TensorType(("N", 4)))
    c = g.add_param("counter", np.array(5, np.int64))
    g.set_outputs([g.op("random_uniform", c, shape=("N", 4), seed=2**62 + 12345),
                   g.op("add", x, g.op("random_uniform", c, shape=(4,), seed=1))])
    gpu, cpu = kiln.compile(g, target="cuda", passes=[]), kiln.compile(g, passes=[])
    for n in (1, 3):
        xv = np.zeros((n, 4), np.float32)
        for a, b, r in zip(gpu(xv), cpu(xv), kiln.interpret(g, xv)):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, r)


def test_dump_dir_gets_the_kernel_source(cuda, tmp_path):
    g = Graph("g")
    x = g.add_input("x", TensorType(("N", 4)))
    g.set_outputs([g.op("exp", x)])
    kiln.compile(g, target="cuda", dump_dir=tmp_path)
    (src,) = tmp_path.glob("*-cuda.py")
    assert "@cuda.jit" in src.read_text() and "# launch: grid=" in src.read_text()


def test_cli_dump_cuda(tmp_path, capsys):
    from kiln.cli import main
    f = tmp_path / "m.py"
    f.write_text("import kiln\nfrom kiln import layers\n"
                 "model = kiln.Sequential([kiln.Input(shape=(8,)), layers.Dense(4, activation='relu'),"
                 " layers.Dense(3, activation='softmax')])\n")
    assert main(["dump", f"{f}:model", "--cuda"]) == 0
    out = capsys.readouterr().out
    assert out.count("@cuda.jit") == 3
    assert "matmul kernel for %0: f32[N,4] = fusion(" in out and "softmax kernel" in out
    assert "# launch: grid=" in out and "cuda.shared.array((8, 132), float32)" in out   # GEMM A tile (128 x 32 tiles)
    assert "cuda.local.array(16, float32)" in out                   # 4 x 4 accumulators per thread


def test_no_gpu_and_no_simulator_is_a_clear_error_and_import_needs_no_numba():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import sys, numpy as np, kiln\n"
            "assert 'numba' not in sys.modules, 'kiln imported numba'\n"
            "from kiln.ir import Graph, TensorType\n"
            "g = Graph('g'); x = g.add_input('x', TensorType(('N', 2))); g.set_outputs([g.op('exp', x)])\n"
            "try:\n"
            "    kiln.compile(g, target='cuda')\n"
            "except RuntimeError as e:\n"
            "    print('ERROR', type(e).__name__, e)\n"
            "else:\n"
            "    print('COMPILED')\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    if "COMPILED" in r.stdout:
        pytest.skip("this machine has a GPU")
    assert "ERROR CudaUnavailable" in r.stdout and "NUMBA_ENABLE_CUDASIM=1" in r.stdout


def test_cnn_training_step_runs_on_the_device(cuda):
    m = kiln.Sequential([kiln.Input(shape=(4, 4, 1)),
                         layers.Conv2D(2, 3, padding="same", activation="relu"),
                         layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = rng.random((2, 4, 4, 1)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 2]]
    m.train_on_batch(x, y)
    g = m._train_step.train_graph
    gpu = kiln.compile(g, target="cuda", passes="training")
    cpu = kiln.compile(g, passes="training")
    sw, lr = np.ones(2, np.float32), np.float32(0.1)
    for n in (2, 1):
        np.testing.assert_allclose(gpu(x[:n], y[:n], sw[:n], lr), cpu(x[:n], y[:n], sw[:n], lr),
                                   rtol=1e-5, atol=1e-6)
    for k, v in cpu.params.items():
        np.testing.assert_allclose(gpu.params[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_embedding_classifier_training_step_with_accuracy(cuda):
    """gather forward, scatter_add backward, argmax for the accuracy metric."""
    m = kiln.Sequential([kiln.Input(shape=(3,), dtype="int32"), layers.Embedding(7, 4),
                         layers.GlobalAveragePooling1D(), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.integers(0, 7, (3, 3)).astype(np.int32)
    y = np.array([0, 2, 1])
    m.train_on_batch(x, y)
    g = m._train_step.train_graph
    gpu = kiln.compile(g, target="cuda", passes="training")
    cpu = kiln.compile(g, passes="training")
    sw, lr = np.ones(3, np.float32), np.float32(0.1)
    yi = y.astype(g.inputs[1].type.dtype.np)
    for n in (3, 1):
        for a, b in zip(gpu(x[:n], yi[:n], sw[:n], lr), cpu(x[:n], yi[:n], sw[:n], lr)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k, v in cpu.params.items():
        np.testing.assert_allclose(gpu.params[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_dropout_batchnorm_training_step_matches_bit_for_bit_randomness(cuda):
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(5, activation="relu"),
                         layers.Dropout(0.3), layers.BatchNormalization(),
                         layers.Dense(3, activation="softmax")])
    # SGD, not Adam: the bias before BatchNormalization has a zero gradient up to
    # rounding, which Adam would scale up to +-lr with either sign
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((3, 4)).astype(np.float32)
    y = np.array([0, 2, 1])
    m.train_on_batch(x, y)
    g = m._train_step.train_graph
    gpu = kiln.compile(g, target="cuda", passes="training")
    cpu = kiln.compile(g, passes="training")
    yi = y.astype(g.inputs[1].type.dtype.np)
    sw, lr = np.ones(3, np.float32), np.float32(0.05)
    for n in (2,):
        for a, b in zip(gpu(x[:n], yi[:n], sw[:n], lr), cpu(x[:n], yi[:n], sw[:n], lr)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k, v in cpu.params.items():
        np.testing.assert_allclose(gpu.params[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
