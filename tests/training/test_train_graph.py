"""The compiled training step is ONE graph: what it holds as state, what it is fed."""
import numpy as np

import kiln
from kiln import layers
from kiln.ir import Graph, TensorType


def test_train_graph_state_inputs_and_text():
    m = kiln.Sequential([kiln.Input(shape=(5,)), layers.Dense(4, activation="relu"),
                         layers.Dropout(0.2), layers.BatchNormalization(),
                         layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.train_on_batch(np.ones((6, 5), np.float32), np.zeros(6, int))
    step = m._train_step
    g = step.train_graph
    assert [v.name for v in g.inputs] == ["input_layer", "y_true", "sample_weight",
                                          "learning_rate"]
    assert [str(v.type) for v in g.inputs[1:]] == ["i32[N]", "f32[N]", "f32[]"]
    assert g.updated_params == {
        "dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias",          # weights
        "batch_normalization.gamma", "batch_normalization.beta",
        "batch_normalization.moving_mean", "batch_normalization.moving_variance",  # assign
        "rng.counter", "adam.iterations",
        *(f"adam.{s}.{p}" for s in ("momentum", "velocity") for p in (
            "dense.kernel", "dense.bias", "batch_normalization.gamma",
            "batch_normalization.beta", "dense_1.kernel", "dense_1.bias")),
        "metrics.loss.total", "metrics.loss.count",
        "metrics.accuracy.total", "metrics.accuracy.count"}
    assert step.names == ["loss", "accuracy"] and len(g.outputs) == 2
    assert str(kiln.ir.parse(str(g))) == str(g)          # the whole step prints and parses
    assert int(step.train_exe.params["rng.counter"]) == 1
    assert int(step.train_exe.params["adam.iterations"]) == 1 == m.optimizer.iterations


def test_fusion_never_leaves_a_region_symbol_unbound():
    """A count of the batch (a shared constant broadcast to [N], summed -- what losses and
    metrics use for N) in a group that reads only that scalar from outside: its region
    would not bind N, so it stays unfused (it used to fail to verify)."""
    g = Graph("count")
    x = g.add_input("x", TensorType(("N", 3)))
    with g.building():
        one = g.constant(1.0)
        n = g.op("reduce_sum", g.op("broadcast_to", one, shape=("N",)), axes=(0,))
        s = g.op("reduce_sum", g.op("add", x, one), axes=(0, 1))
        out = g.op("div", s, g.op("mul", n, g.constant(3.0)))
    g.set_outputs([out])
    exe = kiln.compile(g)
    xs = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(exe(xs), (xs + 1).mean(), rtol=1e-6)
    np.testing.assert_allclose(exe(xs[:2]), (xs[:2] + 1).mean(), rtol=1e-6)


def test_relu_gradient_reads_the_output_so_the_forward_relu_joins_its_gemm():
    """relu's vjp masks with relu(x) > 0 (the same mask as x > 0), so a training step's
    pre-activation is read only by the relu, which the fusion pass then puts in the
    Dense GEMM's epilogue -- no standalone relu kernel in the step; the step still
    trains exactly as numpy's SGD on the same formula."""
    rng = np.random.default_rng(0)
    m = kiln.Sequential([kiln.Input(shape=(6,)), layers.Dense(5, activation="relu"),
                         layers.Dense(1)])
    w1, b1, w2, b2 = (v.copy() for v in m.get_weights())
    m.compile(optimizer=kiln.optimizers.SGD(0.1), loss="mse")
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.standard_normal((8, 1)).astype(np.float32)
    m.train_on_batch(x, y)
    exe = m._train_step.train_exe
    assert "relu" not in [n.op.name for n in exe.graph.nodes]
    assert any(n.op.name == "fusion" and "relu" in {i.op.name for i in n.regions[0].nodes}
               and "matmul_packed" in {i.op.name for i in n.regions[0].nodes}
               for n in exe.graph.nodes)
    z = x @ w1 + b1
    h = np.maximum(z, 0)
    d = 2 * (h @ w2 + b2 - y) / len(x)
    dz = (d @ w2.T) * (z > 0)
    want = [w1 - 0.1 * x.T @ dz, b1 - 0.1 * dz.sum(0), w2 - 0.1 * h.T @ d, b2 - 0.1 * d.sum(0)]
    for got, ref in zip(m.get_weights(), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
