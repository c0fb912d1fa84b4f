"""Pooling and normalization layers vs numpy references; BatchNormalization's training
branch (batch statistics, moving-statistics updates) and its folding after Conv2D."""
import numpy as np
import pytest

import kiln
from kiln import layers

from . import np_refs as ref
from .test_conv_layers import check, rand, randomize

pytestmark = pytest.mark.usefixtures("fast_compile")


# -- pooling --------------------------------------------------------------------------------
POOL_CASES = [  # (input hwc, pool, strides, padding, batch)
    ((6, 7, 3), (2, 2), None, "valid", 2),
    ((7, 7, 2), (2, 2), None, "same", 1),
    ((9, 8, 2), (3, 3), (2, 2), "same", 3),
    ((9, 8, 2), (3, 2), (1, 2), "valid", 1),
    ((5, 6, 1), (3, 3), (3, 3), "same", 2),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling2d(kind, case):
    hwc, pool, strides, pad, batch = case
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls(pool, strides=strides, padding=pad)
    assert layer.strides == (strides or pool)
    m = kiln.Sequential([kiln.Input(shape=hwc), layer])
    assert m.count_params() == 0
    x = rand(batch, *hwc)
    expected = ref.pool2d(x, pool, strides or pool, pad, "max" if kind == "max" else "avg")
    assert m.output_shape == (None,) + expected.shape[1:]
    check(m, x, expected, compiled=case in POOL_CASES[1::2])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("steps,pool,strides,pad", [(9, 2, None, "valid"), (9, 3, 2, "same"),
                                                     (7, 4, 1, "same")])
def test_pooling1d(kind, steps, pool, strides, pad):
    cls = layers.MaxPooling1D if kind == "max" else layers.AveragePooling1D
    m = kiln.Sequential([kiln.Input(shape=(steps, 3)), cls(pool, strides=strides, padding=pad)])
    x = rand(2, steps, 3)
    expected = ref.pool2d(x[:, None], (1, pool), (1, strides or pool), pad, kind)[:, 0]
    check(m, x, expected, compiled=pad == "same" and strides == 2)


def test_pooling_defaults():
    assert layers.MaxPooling2D().pool_size == (2, 2) and layers.MaxPooling1D().pool_size == (2,)
    with pytest.raises(TypeError):
        layers.AveragePooling2D()   # pool_size is required, as in Keras
    with pytest.raises(ValueError, match="padding"):
        layers.MaxPooling2D(padding="full")
    with pytest.raises(NotImplementedError, match="channels_first"):
        layers.AveragePooling2D(2, data_format="channels_first")


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(keepdims):
    inp = kiln.Input(shape=(5, 6, 3))
    seq = kiln.Input(shape=(7, 4))
    outs = [layers.GlobalAveragePooling2D(keepdims=keepdims)(inp),
            layers.GlobalMaxPooling2D(keepdims=keepdims)(inp),
            layers.GlobalAveragePooling1D(keepdims=keepdims)(seq),
            layers.GlobalMaxPooling1D(keepdims=keepdims)(seq)]
    m = kiln.Model([inp, seq], outs)
    x, s = rand(2, 5, 6, 3), rand(2, 7, 4)
    expected = [x.mean(axis=(1, 2), keepdims=keepdims), x.max(axis=(1, 2), keepdims=keepdims),
                s.mean(axis=1, keepdims=keepdims), s.max(axis=1, keepdims=keepdims)]
    g = kiln.lower(m)
    for got, want in zip(kiln.interpret(g, x, s), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(m.predict([x, s]), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert layers.GlobalAveragePooling2D().compute_output_shape((None, 5, 6, 3)) == (None, 3)


# -- BatchNormalization -----------------------------------------------------------------------
def bn_model(shape=(6, 5, 4), **kw):
    bn = layers.BatchNormalization(**kw)
    m = kiln.Sequential([kiln.Input(shape=shape), bn])
    gamma, beta = rand(shape[-1]), rand(shape[-1])
    mean, var = rand(shape[-1]), np.abs(rand(shape[-1])) + 0.1
    bn.set_weights([gamma, beta, mean, var])
    return m, bn, (gamma, beta, mean, var)


def test_batch_normalization_inference():
    m, bn, (gamma, beta, mean, var) = bn_model()
    assert (bn.momentum, bn.epsilon, bn.axis) == (0.99, 1e-3, 3)
    assert [w.name for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.name for w in bn.trainable_weights] == ["gamma", "beta"]
    assert [w.name for w in bn.non_trainable_weights] == ["moving_mean", "moving_variance"]
    assert m.count_params() == 16
    x = rand(3, 6, 5, 4)
    expected = gamma * (x - mean) / np.sqrt(var + 1e-3) + beta
    check(m, x, expected, rtol=1e-5, atol=1e-5)


def test_batch_normalization_other_axis_center_scale_and_defaults():
    bn = layers.BatchNormalization(axis=1, center=False, epsilon=0.01)
    m = kiln.Sequential([kiln.Input(shape=(3, 5)), bn])
    assert [w.name for w in bn.weights] == ["gamma", "moving_mean", "moving_variance"]
    assert [w.shape for w in bn.weights] == [(3,)] * 3 and m.count_params() == 9
    gamma, mean, var = rand(3), rand(3), np.abs(rand(3)) + 0.5
    bn.set_weights([gamma, mean, var])
    x = rand(2, 3, 5)
    c = (slice(None), None)
    check(m, x, gamma[c] * (x - mean[c]) / np.sqrt(var[c] + 0.01), rtol=1e-5, atol=1e-5,
          compiled=False)
    fresh = kiln.Sequential([kiln.Input(shape=(4,)), layers.BatchNormalization()])
    np.testing.assert_allclose(fresh.predict(np.ones((2, 4), np.float32)),
                               np.full((2, 4), 1 / np.sqrt(1 + 1e-3)), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="renorm"):
        layers.BatchNormalization(renorm=True)


def test_batch_normalization_training_branch_updates_moving_statistics():
    m, bn, (gamma, beta, mean, var) = bn_model(momentum=0.9)
    g = kiln.lower(m, training=True)
    assert sorted(p.name for p, _ in g.updates) == ["batch_normalization.moving_mean",
                                                    "batch_normalization.moving_variance"]
    x = rand(4, 6, 5, 4)
    out, updates = kiln.interpret(g, x, return_updates=True)
    bm, bv = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))   # biased variance
    np.testing.assert_allclose(out, gamma * (x - bm) / np.sqrt(bv + 1e-3) + beta,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(updates["batch_normalization.moving_mean"],
                               mean * 0.9 + bm * 0.1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates["batch_normalization.moving_variance"],
                               var * 0.9 + bv * 0.1, rtol=1e-5, atol=1e-6)
    bn.trainable = False   # a frozen BatchNormalization runs in inference mode (Keras 3)
    frozen = kiln.lower(m, training=True)
    assert frozen.updates == []


def test_batch_normalization_after_conv_folds_into_the_conv(monkeypatch):
    monkeypatch.undo()   # the default (O3) compile
    conv = layers.Conv2D(6, 3, padding="same")
    bn = layers.BatchNormalization()
    m = kiln.Sequential([kiln.Input(shape=(7, 7, 3)), conv, bn, layers.Activation("relu")])
    randomize(m)
    w, b, gamma, beta, mean, var = m.get_weights()
    var = np.abs(var) + 0.1
    bn.set_weights([gamma, beta, mean, var])
    # simplify + constfold move the scale into the kernel and merge the shifts into the
    # conv's bias: one conv, one add (the bias), the relu -- no mul, sqrt or div
    folded = kiln.passes.PassManager(["simplify", "constfold", "dce"]).run(kiln.lower(m))
    kept = [n.op.name for n in folded.nodes if n.op.name != "constant"]
    assert kept == ["conv2d", "add", "relu"]
    exe = kiln.compile(m)
    nodes = [line.split(" = ")[1].split("(")[0] for line in exe.ir.splitlines() if " = " in line]
    assert nodes.count("add") == 1 and not {"mul", "sqrt", "div", "sub", "neg"} & set(nodes)
    x = rand(2, 7, 7, 3)
    z = ref.conv2d(x, w, padding="same") + b
    expected = np.maximum(gamma * (z - mean) / np.sqrt(var + 1e-3) + beta, 0)
    np.testing.assert_allclose(exe(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.predict(x), expected, rtol=1e-5, atol=1e-5)


# -- LayerNormalization ---------------------------------------------------------------------
@pytest.mark.parametrize("axis,shape", [(-1, (5, 6)), ([1, 2], (3, 4)), (1, (4, 3))])
def test_layer_normalization(axis, shape):
    ln = layers.LayerNormalization(axis=axis)
    m = kiln.Sequential([kiln.Input(shape=shape), ln])
    randomize(m)
    gamma, beta = ln.get_weights()
    axes = tuple(a % 3 for a in (axis if isinstance(axis, list) else [axis]))
    assert gamma.shape == beta.shape == tuple(((None,) + shape)[a] for a in axes)
    assert [w.name for w in ln.weights] == ["gamma", "beta"] and ln.epsilon == 1e-3
    x = rand(3, *shape)
    mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    bshape = [1, 1, 1]
    for a in axes:
        bshape[a] = x.shape[a]
    expected = (x - mu) / np.sqrt(var + 1e-3) * gamma.reshape(bshape) + beta.reshape(bshape)
    check(m, x, expected, rtol=1e-4, atol=1e-5, compiled=axis == -1)
