"""The functional API: kiln.Input, layer calls on symbolic tensors, kiln.Model(inputs,
outputs) with several inputs / outputs (lists and dicts), shared layers, nested models,
model.layers / get_layer, lowering to one graph, predict."""
import numpy as np
import pytest

import kiln
from kiln import layers

from .helpers import relu, softmax
from .test_conv_layers import check, rand, randomize

pytestmark = pytest.mark.usefixtures("fast_compile")


def test_symbolic_tensors_and_nodes():
    x = kiln.Input(shape=(4,), name="x")
    assert x.shape == (None, 4) and x.dtype == "float32" and x.name == "x"
    d = layers.Dense(3)
    y = d(x)
    assert isinstance(y, layers.KerasTensor) and y.shape == (None, 3)
    assert d.built and d.kernel.shape == (4, 3)
    assert y._keras_history == (d, 0, 0) and len(d._inbound_nodes) == 1
    assert d._inbound_nodes[0].input_tensors == [x]
    y2 = d(x)
    assert y2._keras_history == (d, 1, 0)   # a second call: a second node, same weights
    with pytest.raises(TypeError, match="arithmetic on symbolic KerasTensors"):
        _ = x + y


def test_two_inputs_shared_layer_two_outputs():
    a = kiln.Input(shape=(5,), name="a")
    b = kiln.Input(shape=(5,), name="b")
    shared = layers.Dense(4, activation="relu", name="shared")
    ha, hb = shared(a), shared(b)
    merged = layers.concatenate([ha, hb])
    out1 = layers.Dense(3, activation="softmax", name="probs")(merged)
    out2 = layers.Subtract(name="diff")([ha, hb])
    m = kiln.Model(inputs=[a, b], outputs=[out1, out2], name="siamese")
    assert type(m).__name__ == "Functional" and isinstance(m, kiln.Model)
    assert [l.name for l in m.layers] == ["a", "b", "shared", "concatenate", "probs", "diff"]
    assert m.get_layer("shared") is shared and m.get_layer(index=4).name == "probs"
    # the shared layer's weights appear once: 5*4+4 + 8*3+3
    assert [w.path for w in m.weights] == ["shared/kernel", "shared/bias", "probs/kernel",
                                           "probs/bias"]
    assert m.count_params() == 24 + 27
    g = kiln.lower(m)
    kiln.ir.verify(g)
    assert [v.name for v in g.inputs] == ["a", "b"] and len(g.outputs) == 2
    assert str(g).count("param %shared.kernel") == 1 and str(g).count("%shared.kernel)") == 2
    xa, xb = rand(6, 5), rand(6, 5)
    w, bias, w2, b2 = [v.astype(np.float64) for v in m.get_weights()]
    ha_, hb_ = relu(xa @ w + bias), relu(xb @ w + bias)
    want = [softmax(np.concatenate([ha_, hb_], axis=1) @ w2 + b2), ha_ - hb_]
    got = kiln.interpret(g, xa, xb)
    for gv, wv in zip(got, want):
        np.testing.assert_allclose(gv, wv, rtol=1e-5, atol=1e-6)
    for preds in (m.predict([xa, xb], batch_size=4), m.predict({"a": xa, "b": xb}),
                  m([xa, xb])):
        assert isinstance(preds, list) and len(preds) == 2
        for gv, wv in zip(preds, want):
            np.testing.assert_allclose(gv, wv, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        m.predict({"a": xa})


def test_dict_inputs_and_outputs_and_single_sample():
    inputs = {"img": kiln.Input(shape=(3, 3, 2), name="img"),
              "meta": kiln.Input(shape=(2,), name="meta")}
    feat = layers.Flatten()(inputs["img"])
    both = layers.Concatenate()([feat, inputs["meta"]])
    outputs = {"score": layers.Dense(1, name="score")(both),
               "aux": layers.Dense(2, name="aux")(inputs["meta"])}
    m = kiln.Model(inputs, outputs)
    assert m.name == "functional"
    img, meta = rand(1, 3, 3, 2), rand(1, 2)
    ws, bs, wa, ba = m.get_layer("score").get_weights() + m.get_layer("aux").get_weights()
    want = {"score": np.concatenate([img.reshape(1, -1), meta], 1) @ ws + bs,
            "aux": meta @ wa + ba}
    got = m.predict({"meta": meta, "img": img})
    assert set(got) == {"score", "aux"}
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    g = kiln.lower(m)   # dict inputs flatten in sorted-key order, as Keras' tree
    assert [v.name for v in g.inputs] == ["img", "meta"]


def test_nested_models_sequential_and_functional_inside_functional():
    enc_in = kiln.Input(shape=(6,), name="enc_in")
    encoder = kiln.Model(enc_in, layers.Dense(3, activation="tanh")(enc_in), name="encoder")
    head = kiln.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)], name="head")
    x = kiln.Input(shape=(6,), name="x")
    y = head(encoder(x))
    m = kiln.Model(x, y, name="outer")
    assert [l.name for l in m.layers] == ["x", "encoder", "head"]
    assert [type(l).__name__ for l in m.layers] == ["InputLayer", "Functional", "Sequential"]
    assert m.count_params() == (6 * 3 + 3) + (3 * 4 + 4) + (4 * 2 + 2)
    randomize(m)
    we, be, w1, b1, w2, b2 = m.get_weights()
    data = rand(5, 6)
    want = relu(np.tanh(data @ we + be) @ w1 + b1) @ w2 + b2
    check(m, data, want, rtol=1e-5, atol=1e-5)
    # the nested models still work on their own, with the same weights
    np.testing.assert_allclose(encoder.predict(data), np.tanh(data @ we + be), rtol=1e-5,
                               atol=1e-6)
    # a Functional model inside a Sequential
    s = kiln.Sequential([kiln.Input(shape=(6,)), encoder, layers.Dense(1)])
    w3, b3 = s.layers[-1].get_weights()
    check(s, data, np.tanh(data @ we + be) @ w3 + b3, rtol=1e-5, atol=1e-5, compiled=False)


def test_model_called_twice_shares_weights_and_reuses_layer_outputs():
    inp = kiln.Input(shape=(3,))
    tower = kiln.Sequential([layers.Dense(2)], name="tower")
    a, b = kiln.Input(shape=(3,), name="p"), kiln.Input(shape=(3,), name="q")
    dist = layers.Subtract()([tower(a), tower(b)])
    m = kiln.Model([a, b], dist)
    w, bias = tower.get_weights()
    xa, xb = rand(2, 3), rand(2, 3)
    check(m, [xa, xb], (xa @ w + bias) - (xb @ w + bias), rtol=1e-5, atol=1e-6, compiled=False)
    assert inp.shape == (None, 3)


def test_training_flag_reaches_layers_and_explicit_node_training_is_kept():
    x = kiln.Input(shape=(4,))
    h = layers.BatchNormalization(name="bn")(x)
    frozen_bn = layers.BatchNormalization(name="bn_inf")(h, training=False)
    m = kiln.Model(x, frozen_bn)
    g = kiln.lower(m, training=True)
    # the first BN trains (updates its moving statistics); the second was called with
    # training=False explicitly, so it stays in inference mode
    assert sorted(p.name for p, _ in g.updates) == ["bn.moving_mean", "bn.moving_variance"]


def test_functional_errors():
    a, b = kiln.Input(shape=(2,)), kiln.Input(shape=(2,))
    out = layers.Add()([a, b])
    with pytest.raises(ValueError, match="Graph disconnected"):
        kiln.Model(a, out)
    with pytest.raises(ValueError, match="must be KerasTensors"):
        kiln.Model(a, np.zeros(2))
    with pytest.raises(ValueError, match="must come from `kiln.Input`"):
        kiln.Model(layers.Dense(2)(a), out)
    d = layers.Dense(3, name="dup")
    d2 = layers.Dense(3, name="dup")
    with pytest.raises(ValueError, match='The name "dup" is used 2 times'):
        kiln.Model(a, d2(d(a)))
    built = layers.Dense(3, name="d3")
    kiln.Model(a, built(a))
    with pytest.raises(ValueError, match=r'layer "d3".*expected axis -1 of input shape to have '
                                         r"value 2, but received input with shape \(None, 5\)"):
        built(kiln.Input(shape=(5,)))


def test_unconnected_input_is_kept_and_model_inputs_outputs():
    a, b = kiln.Input(shape=(2,), name="used"), kiln.Input(shape=(3,), name="unused")
    m = kiln.Model([a, b], layers.Dense(1)(a))
    assert [l.name for l in m.layers][:2] == ["used", "unused"]
    assert m.inputs == [a, b] and m.input_shape == [(None, 2), (None, 3)]
    assert m.output_shape == (None, 1)
    xa = rand(2, 2)
    w, bias = m.layers[-1].get_weights()
    np.testing.assert_allclose(m.predict([xa, rand(2, 3)]), xa @ w + bias, rtol=1e-5)


def test_subclass_with_functional_init():
    class Tiny(kiln.Model):
        def __init__(self):
            inp = kiln.Input(shape=(3,))
            super().__init__(inp, layers.Dense(2)(inp), name="tiny")

    m = Tiny()
    assert isinstance(m, kiln.models.Functional) and isinstance(m, Tiny) and m.name == "tiny"
    x = rand(2, 3)
    w, b = m.get_weights()
    np.testing.assert_allclose(m.predict(x), x @ w + b, rtol=1e-5)
