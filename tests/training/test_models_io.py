"""Training models beyond a plain stack: several inputs and outputs (lists, dicts), loss
weights, BatchNormalization state, frozen layers, subclassed models."""
import numpy as np
import pytest

import kiln
from kiln import layers
from kiln.frontend.models import Model

rng = np.random.default_rng(3)
XA = rng.normal(size=(40, 4)).astype(np.float32)
XB = rng.normal(size=(40, 3)).astype(np.float32)
YR = rng.normal(size=(40, 1)).astype(np.float32)
YC = rng.integers(0, 3, 40)


def two_headed():
    a, b = kiln.Input(shape=(4,), name="a"), kiln.Input(shape=(3,), name="b")
    h = layers.Dense(8, activation="relu")(layers.Concatenate()([a, b]))
    return Model([a, b], [layers.Dense(1, name="reg")(h),
                          layers.Dense(3, activation="softmax", name="cls")(h)])


def test_multi_input_multi_output_losses_weights_and_metrics():
    m = two_headed()
    m.compile(optimizer=kiln.optimizers.SGD(0.0),
              loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
              loss_weights={"reg": 0.5, "cls": 2.0}, metrics={"cls": ["accuracy"], "reg": ["mae"]})
    d = m.evaluate({"a": XA, "b": XB}, {"reg": YR, "cls": YC}, verbose=0, return_dict=True,
                   batch_size=40)
    assert list(d) == ["loss", "reg_mae", "cls_accuracy", "reg_loss", "cls_loss"]
    assert d["loss"] == pytest.approx(0.5 * d["reg_loss"] + 2.0 * d["cls_loss"], rel=1e-6)
    reg, cls = m.predict([XA, XB], verbose=0)
    assert d["reg_loss"] == pytest.approx(((reg - YR) ** 2).mean(), rel=1e-5)
    assert d["cls_loss"] == pytest.approx(-np.log(cls[np.arange(40), YC]).mean(), rel=1e-4)
    assert d["cls_accuracy"] == pytest.approx((cls.argmax(1) == YC).mean())
    h = m.fit([XA, XB], [YR, YC], epochs=2, batch_size=16, verbose=0)
    assert list(h.history) == list(d)
    with pytest.raises(ValueError, match="missing"):
        m.fit({"a": XA}, [YR, YC], verbose=0)
    with pytest.raises(ValueError, match="do not correspond"):
        m.compile(optimizer="sgd", loss={"nope": "mse"})
        m.fit([XA, XB], [YR, YC], verbose=0)


def test_batch_norm_statistics_are_state_and_sync_back():
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(6), layers.BatchNormalization(),
                         layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    bn = m.layers[1]
    x = XA * 3 + 2
    pre = x.astype(np.float64) @ m.layers[0].kernel.numpy() + m.layers[0].bias.numpy()
    m.fit(x, YR, batch_size=40, epochs=1, verbose=0, shuffle=False)   # one step
    # Keras: moving = moving * 0.99 + batch statistic * 0.01 (biased variance)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * pre.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.99 + 0.01 * pre.var(0), rtol=1e-4)
    assert len(m.get_weights()) == 8


def test_frozen_layer_keeps_its_weights_and_unfreezing_recompiles():
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(5, activation="relu"),
                         layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    first = m.layers[0]
    first.trainable = False
    k = first.kernel.numpy()
    m.fit(XA, YR, epochs=2, verbose=0)
    np.testing.assert_array_equal(first.kernel.numpy(), k)
    step = m._train_step
    first.trainable = True
    m.fit(XA, YR, epochs=1, verbose=0)
    assert m._train_step is not step
    assert not np.array_equal(first.kernel.numpy(), k)


def test_subclassed_model_trains():
    class Net(Model):
        def __init__(self):
            super().__init__()
            self.d1 = layers.Dense(8, activation="relu")
            self.d2 = layers.Dense(1)

        def call(self, inputs, training=False):
            return self.d2(self.d1(inputs))

    m = Net()
    m.compile(optimizer="adam", loss="mse")
    h = m.fit(XA, YR, epochs=3, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_evaluate_alone_never_builds_the_training_graph():
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(1)])
    m.trainable = False
    m.compile(optimizer="sgd", loss="mse")
    p = m.predict(XA, verbose=0)
    assert m.evaluate(XA, YR, verbose=0) == pytest.approx(((p - YR) ** 2).mean(), rel=1e-5)
    assert m._train_step.train_exe is None
    with pytest.raises(ValueError, match="no trainable weights"):
        m.fit(XA, YR, verbose=0)
