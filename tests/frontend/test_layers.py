"""Layers: Dense/Activation/Dropout/Flatten/Reshape, shapes by tracing, custom layers."""
import numpy as np
import pytest

import kiln
from kiln import layers, ops

from .helpers import relu, sigmoid, softmax


def test_dense_eager_call_matches_numpy():
    d = layers.Dense(3, activation="tanh")
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    y = d(x)
    w, b = d.get_weights()
    assert w.shape == (4, 3) and b.shape == (3,) and d.built
    np.testing.assert_allclose(y, np.tanh(x @ w + b), rtol=1e-5, atol=1e-6)


def test_dense_contracts_last_axis_of_rank3_input():
    m = kiln.Sequential([kiln.Input(shape=(4, 6)), layers.Dense(3)])
    assert m.output_shape == (None, 4, 3)
    assert m.layers[0].kernel.shape == (6, 3)
    x = np.random.default_rng(1).standard_normal((5, 4, 6)).astype(np.float32)
    w, b = m.get_weights()
    ref = np.einsum("bti,io->bto", x, w) + b
    np.testing.assert_allclose(kiln.interpret(kiln.lower(m), x), ref, rtol=1e-5, atol=1e-5)


def test_dense_validation():
    for units in (0, -3, 2.5, "4", True):
        with pytest.raises(ValueError, match="expected a positive integer"):
            layers.Dense(units)
    with pytest.raises(ValueError, match=r"rank >= 2"):
        kiln.Sequential([kiln.Input(shape=()), layers.Dense(2)])
    d = layers.Dense(2, use_bias=False)
    d.build((None, 3))
    assert [w.name for w in d.weights] == ["kernel"] and d.count_params() == 6


def test_compute_output_shape_is_traced():
    assert layers.Dense(7).compute_output_shape((None, 3)) == (None, 7)
    assert layers.Flatten().compute_output_shape((None, 2, 3, 4)) == (None, 24)
    assert layers.Flatten().compute_output_shape((None,)) == (None, 1)
    assert layers.Reshape((3, -1)).compute_output_shape((None, 12)) == (None, 3, 4)
    assert layers.Reshape((2, 2, 3)).compute_output_shape((None, 3, 4)) == (None, 2, 2, 3)
    assert layers.Activation("softmax").compute_output_shape((None, 5)) == (None, 5)
    assert layers.Dropout(0.5).compute_output_shape((None, 5, 2)) == (None, 5, 2)


@pytest.mark.parametrize("name,ref", [("relu", relu), ("sigmoid", sigmoid), ("tanh", np.tanh),
                                      ("softmax", softmax), ("linear", lambda x: x),
                                      (None, lambda x: x)])
def test_activations(name, ref):
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(layers.Activation(name)(x), ref(x), rtol=1e-6, atol=1e-6)


def test_activation_callables_and_unknown_names():
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_allclose(layers.Activation(kiln.activations.relu)(x), [[0.0, 2.0]])
    assert kiln.activations.get(None) is kiln.activations.linear
    with pytest.raises(ValueError) as e:
        layers.Dense(2, activation="relux")
    for known in ("linear", "relu", "sigmoid", "softmax", "tanh", "'relux'"):
        assert known in str(e.value)


def test_dropout_is_identity_at_inference_and_validates_rate():
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dropout(0.5), layers.Dense(2)])
    g = kiln.lower(m)
    assert [n.op.name for n in g.nodes] == ["matmul", "add"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(layers.Dropout(0.9)(x), x)
    for rate in (-0.1, 1.0, 1.5, "a"):
        with pytest.raises(ValueError, match="Expected a float value between 0 and 1"):
            layers.Dropout(rate)


def test_flatten_and_reshape_forward():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(layers.Flatten()(x), x.reshape(2, 12))
    np.testing.assert_array_equal(layers.Reshape((4, -1))(x), x.reshape(2, 4, 3))
    np.testing.assert_array_equal(layers.Reshape((12,))(x), x.reshape(2, 12))


def test_reshape_errors():
    for bad in ((3, -1, -1), (0, 4), (2, "x"), (2.0, 3)):
        with pytest.raises(ValueError, match="target_shape"):
            layers.Reshape(bad)
    with pytest.raises(ValueError) as e:
        kiln.Sequential([kiln.Input(shape=(12,)), layers.Reshape((5, -1), name="rs")])
    msg = str(e.value)
    assert 'Reshape layer "rs"' in msg and "f32[N,12]" in msg and "[N,5,-1]" in msg
    with pytest.raises(ValueError, match=r"f32\[N,12\].*\[N,5,3\]"):
        kiln.Sequential([kiln.Input(shape=(12,)), layers.Reshape((5, 3))])


class Scale(layers.Layer):
    """A custom layer: y = x * w + c, with w a trainable weight and c a constant."""

    def __init__(self, c=1.0, **kwargs):
        super().__init__(**kwargs)
        self.c = c

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, inputs):  # no `training` argument: the base class copes
        return ops.add(ops.multiply(inputs, self.w), self.c)


def test_custom_layer_with_weights_and_ops():
    m = kiln.Sequential([kiln.Input(shape=(3,)), Scale(2.0), layers.Dense(1)])
    assert m.layers[0].name == "scale"
    assert [w.path for w in m.weights][:1] == ["scale/w"]
    m.layers[0].w.assign([1.0, 2.0, 3.0])
    g = kiln.lower(m)
    assert list(g.params)[:1] == ["scale.w"]
    x = np.ones((2, 3), np.float32)
    w, b = m.layers[1].get_weights()
    np.testing.assert_allclose(kiln.interpret(g, x), (x * [1, 2, 3] + 2.0) @ w + b, rtol=1e-6)


class Block(layers.Layer):
    """A layer made of layers (tracked when assigned as attributes)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d1 = layers.Dense(4, activation="relu")
        self.d2 = layers.Dense(2)

    def call(self, x, training=False):
        return self.d2(self.d1(x, training=training), training=training)


def test_nested_layers_are_tracked():
    b = Block()
    m = kiln.Sequential([kiln.Input(shape=(3,)), b])
    assert [w.path for w in b.weights] == ["dense/kernel", "dense/bias", "dense_1/kernel",
                                           "dense_1/bias"]
    assert m.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    b.trainable = False
    assert m.trainable_weights == [] and len(m.non_trainable_weights) == 4


def test_add_weight_defaults_and_non_trainable():
    class L(layers.Layer):
        def build(self, s):
            self.a = self.add_weight((2, 3))
            self.b = self.add_weight((3,), initializer="zeros", trainable=False, name="b")

        def call(self, x):
            return x

    layer = L()
    layer.build((None, 2))
    assert layer.a.name == "variable" and layer.a.path == "l/variable"
    assert [w.name for w in layer.trainable_weights] == ["variable"]
    assert [w.name for w in layer.non_trainable_weights] == ["b"]
    limit = np.sqrt(6 / (2 + 3))
    assert np.all(np.abs(layer.a.numpy()) <= limit)


def test_layer_call_must_return_a_value():
    class Bad(layers.Layer):
        def call(self, x):
            return 3

    with pytest.raises(TypeError, match="must return an IR Value"):
        Bad()(np.ones((1, 2)))
