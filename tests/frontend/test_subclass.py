"""Subclassed models (``class M(kiln.Model)``) and custom layers written with kiln.ops
and Python operators, traced to IR."""
import numpy as np
import pytest

import kiln
from kiln import layers, ops

from .helpers import relu
from .test_conv_layers import check, rand

pytestmark = pytest.mark.usefixtures("fast_compile")


class ScaledDense(layers.Layer):
    """A custom layer as in Keras' guide: build / add_weight / call with ops and operators."""

    def __init__(self, units, scale=2.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = units, scale

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal",
                                 name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")
        self.steps = self.add_weight(shape=(), initializer="zeros", trainable=False, name="steps")

    def call(self, inputs):
        y = ops.matmul(inputs, self.w) + self.b          # operators on IR values
        return ops.where(y > 0, y * self.scale, ops.abs(y) / 2)


class Net(kiln.Model):
    def __init__(self, use_residual=True, **kwargs):
        super().__init__(**kwargs)
        self.use_residual = use_residual
        self.inp = ScaledDense(6)
        self.blocks = [layers.Dense(6, activation="relu") for _ in range(2)]   # a list
        self.drop = layers.Dropout(0.5)
        self.out = layers.Dense(3)

    def call(self, inputs, training=False):
        x = self.inp(inputs)
        for block in self.blocks:          # Python control flow, resolved at trace time
            h = block(x)
            x = x + h if self.use_residual else h
        x = self.drop(x, training=training)
        return self.out(x)


def reference(net, x):
    w, b, _, w1, b1, w2, b2, w3, b3 = [v.astype(np.float64) for v in net.get_weights()]
    y = x @ w + b
    h = np.where(y > 0, y * 2.0, np.abs(y) / 2)
    for wk, bk in ((w1, b1), (w2, b2)):
        h = h + relu(h @ wk + bk) if net.use_residual else relu(h @ wk + bk)
    return h @ w3 + b3


def test_subclassed_model_builds_on_first_call_and_matches_numpy():
    net = Net()
    assert not net.built and net.weights == []
    x = rand(4, 5)
    y = net(x)   # built from the data's shape, then compiled
    assert net.built and y.shape == (4, 3)
    assert [l.name for l in net.layers] == ["scaled_dense", "dense", "dense_1", "dropout",
                                            "dense_2"]
    assert [w.path for w in net.weights][:3] == ["scaled_dense/w", "scaled_dense/b",
                                                 "scaled_dense/steps"]
    # by hand: 5*6+6+1 (steps), 2*(6*6+6), 6*3+3
    assert net.count_params() == 37 + 84 + 21
    assert len(net.trainable_weights) == 8 and len(net.non_trainable_weights) == 1
    np.testing.assert_allclose(y, reference(net, x), rtol=1e-5, atol=1e-5)
    check(net, x, reference(net, x), rtol=1e-5, atol=1e-5)
    g = kiln.lower(net)
    assert [v.name for v in g.inputs] == ["inputs"] and str(g.inputs[0].type) == "f32[N,5]"


def test_python_control_flow_is_resolved_at_trace_time():
    plain = Net(use_residual=False)
    plain.build((None, 5))
    x = rand(3, 5)
    check(plain, x, reference(plain, x), rtol=1e-5, atol=1e-5, compiled=False)
    g = kiln.lower(plain)
    assert [n.op.name for n in g.nodes].count("add") == 4   # biases only: no residual adds
    with pytest.raises(ValueError, match="has not been built"):
        kiln.lower(Net())


def test_subclassed_model_with_two_inputs_and_two_outputs():
    class TwoHeads(kiln.Model):
        def __init__(self):
            super().__init__(name="two_heads")
            self.shared = layers.Dense(4, activation="tanh")
            self.cls = layers.Dense(2, activation="softmax")

        def call(self, inputs):
            a, b = inputs
            ha, hb = self.shared(a), self.shared(b)
            return [self.cls(ha - hb), ops.sum(ha * hb, axis=-1, keepdims=True)]

    m = TwoHeads()
    xa, xb = rand(5, 3), rand(5, 3)
    out = m.predict([xa, xb])
    w, b, wc, bc = m.get_weights()
    ha, hb = np.tanh(xa @ w + b), np.tanh(xb @ w + b)
    z = (ha - hb) @ wc + bc
    e = np.exp(z - z.max(axis=1, keepdims=True))
    want = [e / e.sum(axis=1, keepdims=True), (ha * hb).sum(axis=1, keepdims=True)]
    assert isinstance(out, list) and len(out) == 2
    for got, wv in zip(out, want):
        np.testing.assert_allclose(got, wv, rtol=1e-5, atol=1e-6)
    assert [v.name for v in kiln.lower(m).inputs] == ["inputs_0", "inputs_1"]


def test_subclassed_model_inside_functional_and_integer_inputs():
    class Lookup(layers.Layer):
        def build(self, input_shape):
            self.table = self.add_weight(shape=(10, 3), initializer="random_uniform", name="table")

        def call(self, ids):
            return ops.take(self.table, ids, axis=0)

    class Bag(kiln.Model):
        def __init__(self):
            super().__init__()
            self.lookup = Lookup()

        def call(self, ids):
            return ops.mean(self.lookup(ids), axis=1)

    bag = Bag()
    ids = np.array([[1, 2, 3], [9, 0, 0]], np.int32)
    table = None
    out = bag(ids)
    table = bag.lookup.table.numpy()
    np.testing.assert_allclose(out, table[ids].mean(axis=1), rtol=1e-6)
    assert str(kiln.lower(bag).inputs[0].type) == "i32[N,3]"
    inp = kiln.Input(shape=(3,), dtype="int32")
    m = kiln.Model(inp, layers.Dense(1)(bag(inp)))
    w, b = m.layers[-1].get_weights()
    check(m, ids, table[ids].mean(axis=1) @ w + b, rtol=1e-5, atol=1e-6, compiled=False)


def test_custom_layer_with_operators_indexing_and_state_update():
    class Odd(layers.Layer):
        def build(self, input_shape):
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                         name="count")

        def call(self, x, training=False):
            if training:
                ops.assign(self.count, self.count + 1.0)
            first = x[:, 0:1]                   # slicing
            last = x[..., -1]                   # an int index drops the axis
            return ops.concatenate([-first, 2 ** x[:, 1:2], x[:, ::2] @ np.ones((2, 2), np.float32),
                                    ops.expand_dims(last, -1) ** 2, abs(x[:, None, 1])[:, 0:1]
                                    + 0 * first], axis=-1)

    m = kiln.Sequential([kiln.Input(shape=(4,)), Odd()])
    x = rand(3, 4)
    want = np.concatenate([-x[:, 0:1], 2 ** x[:, 1:2], x[:, ::2] @ np.ones((2, 2)),
                           x[:, -1:] ** 2, np.abs(x[:, 1:2])], axis=-1)
    check(m, x, want, rtol=1e-5, atol=1e-5)
    _, updates = kiln.interpret(kiln.lower(m, training=True), x, return_updates=True)
    assert updates == {"odd.count": np.float32(1.0)}


def test_model_without_call_and_build_shape_forms():
    class NoCall(kiln.Model):
        pass

    with pytest.raises(NotImplementedError, match="must implement call"):
        NoCall().build((None, 2))

    class Pair(kiln.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(2)

        def call(self, inputs):
            return self.d(inputs["x"]) + inputs["y"]

    p = Pair()
    p.build({"x": (None, 3), "y": (None, 2)})
    assert [v.name for v in kiln.lower(p).inputs] == ["x", "y"]
    x, y = rand(2, 3), rand(2, 2)
    w, b = p.get_weights()
    np.testing.assert_allclose(p.predict({"x": x, "y": y}), x @ w + b + y, rtol=1e-5)
