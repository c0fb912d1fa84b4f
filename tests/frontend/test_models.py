"""Sequential: construction, names, weights, get/set_weights, building, predict."""
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


# -- names ---------------------------------------------------------------------------------
def test_auto_names_follow_keras():
    m1 = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(3), layers.Dense(2),
                          layers.Activation("relu"), layers.Dropout(0.5), layers.Flatten()])
    m2 = kiln.models.Sequential([layers.Dense(1)])
    assert m1.name == "sequential" and m2.name == "sequential_1"
    assert [l.name for l in m1.layers] == ["dense", "dense_1", "activation", "dropout", "flatten"]
    assert m2.layers[0].name == "dense_2"
    assert kiln.Input(shape=(2,)).name == "input_layer_1"  # m1's Input was "input_layer"
    kiln.utils.clear_session()
    assert layers.Dense(1).name == "dense"
    assert kiln.Sequential().name == "sequential"


def test_explicit_names_and_validation():
    assert layers.Dense(3, name="out").name == "out"
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        layers.Dense(3, name="a/b")
    with pytest.raises(ValueError, match="unique names. Name 'd'"):
        kiln.Sequential([layers.Dense(3, name="d"), layers.Dense(3, name="d")])
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense"):
        layers.Dense(3, foo=1)
    with pytest.raises(ValueError, match="Only instances of `kiln.layers.Layer`"):
        kiln.Sequential([lambda x: x])


# -- structure and weights -----------------------------------------------------------------
def test_layers_weights_and_param_counts():
    m = mlp()
    assert [type(l).__name__ for l in m.layers] == ["Dense", "Dense", "Dense"]  # no Input
    assert m.built
    # by hand: 784*512+512, 512*512+512, 512*10+10
    assert m.count_params() == 401920 + 262656 + 5130 == 669706
    assert [l.count_params() for l in m.layers] == [401920, 262656, 5130]
    assert [w.path for w in m.weights] == ["dense/kernel", "dense/bias", "dense_1/kernel",
                                           "dense_1/bias", "dense_2/kernel", "dense_2/bias"]
    assert [w.name for w in m.weights[:2]] == ["kernel", "bias"]
    assert [w.shape for w in m.weights[:2]] == [(784, 512), (512,)]
    assert all(w.dtype == "float32" for w in m.weights)
    assert m.trainable_weights == m.weights and m.non_trainable_weights == []
    m.layers[1].trainable = False
    assert [w.path for w in m.non_trainable_weights] == ["dense_1/kernel", "dense_1/bias"]
    assert len(m.trainable_weights) == 4
    m.layers[1].trainable = True
    assert len(m.trainable_weights) == 6
    assert m.input_shape == (None, 784) and m.output_shape == (None, 10)


def test_get_weights_returns_copies_and_set_weights_round_trips():
    m = mlp()
    ws = m.get_weights()
    assert [w.shape for w in ws] == [(784, 512), (512,), (512, 512), (512,), (512, 10), (10,)]
    ws[0][...] = 0  # a copy: the model is unchanged
    assert np.abs(m.layers[0].kernel.numpy()).sum() > 0
    rng = np.random.default_rng(0)
    new = [rng.standard_normal(w.shape).astype(np.float32) for w in ws]
    m.set_weights(new)
    for a, b in zip(m.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    m.layers[2].set_weights([np.ones((512, 10)), np.zeros(10)])
    np.testing.assert_array_equal(m.get_weights()[4], np.ones((512, 10), np.float32))


def test_set_weights_errors_name_layer_weight_and_shapes():
    m = mlp()
    ws = m.get_weights()
    with pytest.raises(ValueError, match=r"weight list of length 5, but the layer was expecting 6"):
        m.set_weights(ws[:5])
    bad = list(ws)
    bad[3] = np.zeros(7)
    before = m.get_weights()
    with pytest.raises(ValueError) as e:
        m.set_weights(bad)
    msg = str(e.value)
    assert "dense_1/bias" in msg and "(512,)" in msg and "(7,)" in msg
    for a, b in zip(m.get_weights(), before):  # nothing was assigned
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r'"dense".*dense/kernel.*\(784, 512\).*\(512, 784\)'):
        m.layers[0].set_weights([np.zeros((512, 784)), np.zeros(512)])


def test_variable_surface():
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dense(2)])
    k = m.layers[0].kernel
    assert (k.name, k.path, k.shape, k.dtype, k.trainable) == ("kernel", "dense/kernel", (3, 2),
                                                               "float32", True)
    a = k.numpy()
    a[0, 0] = 42.0
    assert k.numpy()[0, 0] != 42.0
    k.assign(np.full((3, 2), 2.0))
    np.testing.assert_array_equal(k.numpy(), np.full((3, 2), 2.0, np.float32))
    with pytest.raises(ValueError, match=r"dense/kernel.*\(2, 3\).*expected shape \(3, 2\)"):
        k.assign(np.zeros((2, 3)))
    np.testing.assert_array_equal(np.asarray(k), k.numpy())


def test_get_layer():
    m = mlp()
    assert m.get_layer("dense_1") is m.layers[1]
    assert m.get_layer(index=2) is m.layers[2]
    with pytest.raises(ValueError, match=r"No such layer: nope. Existing layers are: "
                                         r"\['dense', 'dense_1', 'dense_2'\]"):
        m.get_layer("nope")
    with pytest.raises(ValueError, match="only has 3 layers"):
        m.get_layer(index=3)
    with pytest.raises(ValueError, match="Provide only a layer name or a layer index"):
        m.get_layer("dense", 0)
    with pytest.raises(ValueError, match="Provide either a layer name or layer index"):
        m.get_layer()


# -- building ------------------------------------------------------------------------------
def test_input_shape_on_first_layer_and_add():
    m = kiln.Sequential()
    m.add(layers.Dense(4, input_shape=(3,)))
    assert m.built and m.layers[0].kernel.shape == (3, 4)
    m.add(layers.Dense(2))  # built as soon as it is added
    assert m.layers[1].built and m.layers[1].kernel.shape == (4, 2)
    assert m.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    popped = m.pop()
    assert popped.name == "dense_1" and m.output_shape == (None, 4)


def test_lazy_build_from_first_data():
    m = kiln.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)])
    assert not m.built and m.weights == [] and not m.layers[0].built
    with pytest.raises(ValueError, match="isn't built"):
        m.count_params()
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    y = m.predict(x)
    assert m.built and m.layers[0].kernel.shape == (5, 4)
    np.testing.assert_allclose(y, mlp_forward(x, m.get_weights(), [relu, lambda h: h]),
                               rtol=1e-5, atol=1e-6)


def test_build_method():
    m = kiln.Sequential([layers.Dense(4)])
    with pytest.raises(ValueError, match="must provide an `input_shape`"):
        m.build()
    m.build((None, 7))
    assert m.built and m.layers[0].kernel.shape == (7, 4)
    assert m.input_shape == (None, 7)


def test_nested_sequential():
    inner = kiln.Sequential([layers.Dense(4, activation="relu"), layers.Dense(3)], name="block")
    m = kiln.Sequential([kiln.Input(shape=(5,)), inner, layers.Dense(2)])
    assert [w.path for w in m.weights] == ["dense/kernel", "dense/bias", "dense_1/kernel",
                                           "dense_1/bias", "dense_2/kernel", "dense_2/bias"]
    assert inner.built and inner.count_params() == 5 * 4 + 4 + 4 * 3 + 3
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    ref = mlp_forward(x, m.get_weights(), [relu, lambda h: h, lambda h: h])
    np.testing.assert_allclose(kiln.interpret(kiln.lower(m), x), ref, rtol=1e-5, atol=1e-6)


# -- predict / __call__ ---------------------------------------------------------------------
def test_predict_batches_and_matches_numpy():
    m = mlp()
    x = np.random.default_rng(2).random((37, 784), dtype=np.float32)
    ref = mlp_forward(x, m.get_weights(), [relu, relu, softmax])
    for bs in (None, 16, 37, 100):
        y = m.predict(x, batch_size=bs)
        assert y.shape == (37, 10) and y.dtype == np.float32
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-6)
    y1 = m(x[:5])
    assert isinstance(y1, np.ndarray)
    np.testing.assert_allclose(y1, ref[:5], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m.predict(x[:5].astype(np.float64).tolist()), ref[:5],
                               rtol=1e-4, atol=1e-6)


def test_executable_is_cached_and_invalidated_by_weight_changes():
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dense(2)])
    x = np.ones((2, 3), np.float32)
    y0 = m.predict(x)
    exe = m._executable()
    assert m._executable() is exe  # unchanged model: no recompilation
    m.set_weights([np.ones((3, 2)), np.zeros(2)])
    np.testing.assert_allclose(m.predict(x), np.full((2, 2), 3.0))
    m.layers[0].bias.assign(np.array([1.0, -1.0]))
    np.testing.assert_allclose(m(x), [[4.0, 2.0], [4.0, 2.0]])
    m.add(layers.Dense(1, kernel_initializer="ones"))
    np.testing.assert_allclose(m.predict(x), [[6.0], [6.0]])
    assert y0.shape == (2, 2)


def test_predict_errors():
    m = mlp()
    with pytest.raises(ValueError) as e:
        m.predict(np.zeros((3, 785), np.float32))
    assert "(None, 784)" in str(e.value) and "(3, 785)" in str(e.value)
    with pytest.raises(ValueError, match="rank"):
        m.predict(np.zeros((3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        m.predict(np.zeros((3, 784)), batch_size=0)
    with pytest.raises(ValueError, match="at least one sample"):
        m.predict(np.zeros((0, 784)))
    with pytest.raises(NotImplementedError, match=r"\[training\]"):
        m(np.zeros((1, 784)), training=True)
