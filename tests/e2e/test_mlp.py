"""The foundation's end-to-end check, as a new user would run it: a Keras-style MLP,
compiled once, against an independent numpy forward pass over get_weights()."""
import numpy as np
import pytest

import kiln


def numpy_forward(weights, x):
    w1, b1, w2, b2, w3, b3 = weights
    h = np.maximum(x @ w1 + b1, 0)
    h = np.maximum(h @ w2 + b2, 0)
    z = h @ w3 + b3
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def mlp():
    return kiln.Sequential([kiln.Input(shape=(784,)),
                            kiln.layers.Dense(512, activation="relu"),
                            kiln.layers.Dense(512, activation="relu"),
                            kiln.layers.Dense(10, activation="softmax")])


def test_compiled_mlp_matches_numpy_at_every_batch_size(mlp):
    exe = kiln.compile(mlp)
    x = np.random.default_rng(0).random((37, 784)).astype("float32")
    ref = numpy_forward(mlp.get_weights(), x.astype(np.float64))
    for n in (37, 1, 5):
        np.testing.assert_allclose(exe(x[:n]), ref[:n], rtol=1e-5, atol=1e-7)


def test_lowered_mlp_text_roundtrips_and_verifies(mlp):
    g = kiln.lower(mlp)
    assert str(kiln.ir.parse(str(g))) == str(g)
    kiln.ir.verify(g)
    assert [v.type for v in g.inputs] == [kiln.ir.TensorType(("N", 784))]
    assert [v.type for v in g.outputs] == [kiln.ir.TensorType(("N", 10))]
    assert list(g.params) == [f"{l.name}.{w}" for l in mlp.layers for w in ("kernel", "bias")]
    for (name, v), w in zip(g.params.items(), mlp.get_weights()):
        np.testing.assert_array_equal(g.param_values[name], w)


def test_predict_batches_and_matches(mlp):
    x = np.random.default_rng(1).random((70, 784))
    ref = numpy_forward(mlp.get_weights(), x)
    np.testing.assert_allclose(mlp.predict(x, batch_size=32, verbose=0), ref, rtol=1e-5, atol=1e-7)


def test_predict_sees_new_weights(mlp):
    x = np.random.default_rng(2).random((3, 784)).astype("float32")
    before = mlp.predict(x, verbose=0)
    weights = mlp.get_weights()
    weights[-1] = weights[-1] + np.arange(10, dtype=np.float32)
    mlp.set_weights(weights)
    after = mlp.predict(x, verbose=0)
    np.testing.assert_allclose(after, numpy_forward(weights, x.astype(np.float64)), rtol=1e-5, atol=1e-7)
    assert not np.allclose(before, after)


def test_bad_inputs_name_expected_and_given(mlp):
    exe = kiln.compile(mlp)
    with pytest.raises(ValueError, match=r"expected shape \(None, 784\), got shape \(2, 783\)"):
        exe(np.zeros((2, 783), np.float32))
    with pytest.raises(ValueError, match=r"rank"):
        exe(np.zeros((784,), np.float32))
    with pytest.raises(ValueError, match=r"numeric"):
        exe(np.full((1, 784), "x"))
