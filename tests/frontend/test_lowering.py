"""kiln.lower: the graph's text, verification, parse round trip, numerics."""
import numpy as np
import pytest

import kiln
from kiln import layers

from .helpers import mlp_forward, relu, softmax


def mlp():
    return kiln.Sequential([kiln.Input(shape=(784,)),
                            layers.Dense(512, activation="relu"),
                            layers.Dense(512, activation="relu"),
                            layers.Dense(10, activation="softmax")])


def test_lowered_text():
    m = kiln.Sequential([kiln.Input(shape=(3,), name="x"), layers.Dense(2, activation="relu"),
                         layers.Dropout(0.5), layers.Dense(4, use_bias=False),
                         layers.Activation("sigmoid")], name="tiny")
    assert str(kiln.lower(m)) == """\
graph @tiny(%x: f32[N,3]) -> f32[N,4] {
  param %dense.kernel: f32[3,2]
  param %dense.bias: f32[2]
  param %dense_1.kernel: f32[2,4]
  %0: f32[N,2] = matmul(%x, %dense.kernel)
  %1: f32[N,2] = add(%0, %dense.bias)
  %2: f32[N,2] = relu(%1)
  %3: f32[N,4] = matmul(%2, %dense_1.kernel)
  %4: f32[N,4] = sigmoid(%3)
  return %4
}
"""


def test_lowered_flatten_reshape_text():
    m = kiln.Sequential([kiln.Input(shape=(2, 6)), layers.Reshape((3, -1)), layers.Flatten(),
                         layers.Dense(1)])
    text = str(kiln.lower(m))
    assert text.startswith("graph @sequential(%input_layer: f32[N,2,6]) -> f32[N,1] {\n")
    assert "  %0: f32[N,3,4] = reshape(%input_layer) {shape=[N, 3, -1]}\n" in text
    assert "  %1: f32[N,12] = reshape(%0) {shape=[N, -1]}\n" in text


@pytest.mark.parametrize("batch", [1, 5, 37])
def test_mlp_lowering_interprets_like_numpy(batch):
    m = mlp()
    g = kiln.lower(m)
    kiln.ir.verify(g)
    assert str(kiln.ir.parse(str(g))) == str(g)
    assert g.name == "sequential" and [v.name for v in g.inputs] == ["input_layer"]
    assert str(g.inputs[0].type) == "f32[N,784]" and str(g.outputs[0].type) == "f32[N,10]"
    assert list(g.params) == ["dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias",
                              "dense_2.kernel", "dense_2.bias"]
    x = np.random.default_rng(batch).random((batch, 784), dtype=np.float32)
    ref = mlp_forward(x, m.get_weights(), [relu, relu, softmax])
    y = kiln.interpret(g, x)
    assert y.shape == (batch, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-6)


def test_graph_holds_a_snapshot_of_the_weights():
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dense(2)])
    g = kiln.lower(m)
    np.testing.assert_array_equal(g.param_values["dense.kernel"], m.layers[0].kernel.numpy())
    old = g.param_values["dense.kernel"].copy()
    m.set_weights([np.ones((3, 2)), np.ones(2)])
    np.testing.assert_array_equal(g.param_values["dense.kernel"], old)
    np.testing.assert_array_equal(kiln.lower(m).param_values["dense.kernel"], np.ones((3, 2)))
    assert m._lower().param_values.keys() == g.param_values.keys()


def test_lowering_errors_and_names():
    # training=True lowers the training-mode forward graph (tests/training/ cover it)
    assert kiln.lower(mlp(), training=True).updates == []   # no dropout or BN: no state
    with pytest.raises(ValueError, match="has not been built"):
        kiln.lower(kiln.Sequential([layers.Dense(2)]))
    m = kiln.Sequential([kiln.Input(shape=(3,), name="pixels in"), layers.Dense(2)],
                        name="my model")
    g = kiln.lower(m)
    kiln.ir.verify(g)
    assert g.name == "my_model" and g.inputs[0].name == "pixels_in"


def test_fixed_batch_and_other_input_dtypes():
    m = kiln.Sequential([kiln.Input(shape=(3,), batch_size=4, dtype="int32"), layers.Dense(2)])
    g = kiln.lower(m)
    assert str(g.inputs[0].type) == "i32[4,3]"
    assert [n.op.name for n in g.nodes] == ["cast", "matmul", "add"]
    x = np.arange(12, dtype=np.int32).reshape(4, 3)
    w, b = m.get_weights()
    np.testing.assert_allclose(kiln.interpret(g, x), x @ w + b, rtol=1e-5)
