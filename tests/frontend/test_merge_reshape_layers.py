"""Merge, reshaping, activation and preprocessing layers, and the activation names, vs
numpy formulas written here."""
import math

import numpy as np
import pytest

import kiln
from kiln import layers

from .test_conv_layers import check, rand

pytestmark = pytest.mark.usefixtures("fast_compile")


def two_input_model(layer, s1, s2):
    a, b = kiln.Input(shape=s1), kiln.Input(shape=s2)
    return kiln.Model([a, b], layer([a, b]))


# -- merging --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,fn", [
    (layers.Add, lambda a, b: a + b), (layers.Subtract, lambda a, b: a - b),
    (layers.Multiply, lambda a, b: a * b), (layers.Average, lambda a, b: (a + b) / 2),
    (layers.Maximum, np.maximum), (layers.Minimum, np.minimum)])
def test_binary_merge_layers(cls, fn):
    m = two_input_model(cls(), (3, 4), (3, 4))
    a, b = rand(2, 3, 4), rand(2, 3, 4)
    assert m.count_params() == 0 and m.output_shape == (None, 3, 4)
    check(m, [a, b], fn(a, b), rtol=1e-6, atol=1e-6, compiled=cls in (layers.Add, layers.Maximum))


def test_merge_of_three_and_broadcasting_ranks():
    a, b, c = kiln.Input(shape=(4,)), kiln.Input(shape=(4,)), kiln.Input(shape=(4,))
    m = kiln.Model([a, b, c], [layers.add([a, b, c]), layers.average([a, b, c]),
                               layers.multiply([a, b, c]), layers.maximum([a, b, c])])
    xa, xb, xc = rand(3, 4), rand(3, 4), rand(3, 4)
    want = [xa + xb + xc, (xa + xb + xc) / 3, xa * xb * xc, np.maximum(np.maximum(xa, xb), xc)]
    for got, w in zip(m.predict([xa, xb, xc]), want):
        np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-6)
    # ranks differ: (None, 4) is expanded after the batch axis to (None, 1, 4)
    m2 = two_input_model(layers.Add(), (5, 4), (4,))
    x1, x2 = rand(2, 5, 4), rand(2, 4)
    check(m2, [x1, x2], x1 + x2[:, None, :], compiled=False)


def test_merge_errors():
    with pytest.raises(ValueError, match="incompatible shapes"):
        two_input_model(layers.Add(), (3,), (4,))
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        a = kiln.Input(shape=(2,))
        layers.Subtract()([a, a, a])
    with pytest.raises(ValueError, match="list of inputs"):
        layers.Add()(kiln.Input(shape=(2,)))


@pytest.mark.parametrize("axis,s1,s2", [(-1, (3, 4), (3, 2)), (1, (3, 4), (5, 4)),
                                        (2, (2, 1, 3), (2, 4, 3))])
def test_concatenate(axis, s1, s2):
    m = two_input_model(layers.Concatenate(axis=axis), s1, s2)
    a, b = rand(2, *s1), rand(2, *s2)
    check(m, [a, b], np.concatenate([a, b], axis=axis), compiled=axis == -1)
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        two_input_model(layers.Concatenate(axis=axis), (3, 4, 9), (5, 6, 9))


@pytest.mark.parametrize("axes,s1,s2,normalize", [
    (1, (5,), (5,), False), (-1, (5,), (5,), True), ((1, 2), (4, 3), (2, 4), False),
    (2, (3, 4), (5, 4), True), ((2, 1), (3, 6), (6, 2), False), ((1, 2), (4, 2, 3), (3, 4), False),
])
def test_dot(axes, s1, s2, normalize):
    m = two_input_model(layers.Dot(axes=axes, normalize=normalize), s1, s2)
    a, b = rand(2, *s1), rand(2, *s2)
    ax = (axes, axes) if isinstance(axes, int) else axes
    ax = [x % (len(s) + 1) for x, s in zip(ax, (s1, s2))]
    if normalize:
        a = a / np.linalg.norm(a, axis=ax[0], keepdims=True)
        b = b / np.linalg.norm(b, axis=ax[1], keepdims=True)
    # per sample: contract x's axis ax[0] with y's axis ax[1] (np.tensordot)
    want = np.stack([np.tensordot(a[i], b[i], axes=(ax[0] - 1, ax[1] - 1)) for i in range(2)])
    if want.ndim == 1:
        want = want[:, None]
    assert m.output_shape == (None,) + want.shape[1:]
    check(m, [a, b], want, rtol=1e-5, atol=1e-5, compiled=axes == (1, 2))


# -- reshaping --------------------------------------------------------------------------------
def test_permute_and_repeat_vector():
    m = kiln.Sequential([kiln.Input(shape=(2, 3, 4)), layers.Permute((3, 1, 2))])
    x = rand(2, 2, 3, 4)
    assert m.output_shape == (None, 4, 2, 3)
    check(m, x, x.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="Invalid permutation argument"):
        layers.Permute((0, 1))
    r = kiln.Sequential([kiln.Input(shape=(5,)), layers.RepeatVector(3)])
    v = rand(2, 5)
    assert r.output_shape == (None, 3, 5)
    check(r, v, np.repeat(v[:, None, :], 3, axis=1))
    with pytest.raises(ValueError, match="expected ndim=2"):
        kiln.Sequential([kiln.Input(shape=(5, 2)), layers.RepeatVector(3)])


@pytest.mark.parametrize("padding,pairs", [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))),
                                           (((1, 2), (0, 3)), ((1, 2), (0, 3)))])
def test_zero_padding2d(padding, pairs):
    m = kiln.Sequential([kiln.Input(shape=(3, 4, 2)), layers.ZeroPadding2D(padding)])
    x = rand(2, 3, 4, 2)
    check(m, x, np.pad(x, ((0, 0),) + pairs + ((0, 0),)), compiled=padding == 1)


@pytest.mark.parametrize("cropping,pairs", [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))),
                                            (((0, 2), (1, 3)), ((0, 2), (1, 3)))])
def test_cropping2d(cropping, pairs):
    m = kiln.Sequential([kiln.Input(shape=(6, 7, 2)), layers.Cropping2D(cropping)])
    x = rand(2, 6, 7, 2)
    (t, b), (left, r) = pairs
    check(m, x, x[:, t:6 - b, left:7 - r], compiled=cropping == 1)


def test_cropping_too_much_and_1d_forms():
    with pytest.raises(ValueError, match="should be smaller than the corresponding spatial"):
        kiln.Sequential([kiln.Input(shape=(3, 7, 2)), layers.Cropping2D(((2, 1), (0, 0)))])
    m = kiln.Sequential([kiln.Input(shape=(6, 2)), layers.ZeroPadding1D((1, 2)),
                         layers.Cropping1D((2, 0)), layers.UpSampling1D(3)])
    x = rand(2, 6, 2)
    want = np.repeat(np.pad(x, ((0, 0), (1, 2), (0, 0)))[:, 2:], 3, axis=1)
    check(m, x, want, compiled=False)


@pytest.mark.parametrize("size", [(2, 2), (1, 3), 3])
def test_upsampling2d(size):
    m = kiln.Sequential([kiln.Input(shape=(3, 4, 2)), layers.UpSampling2D(size)])
    sh, sw = (size, size) if isinstance(size, int) else size
    x = rand(2, 3, 4, 2)
    check(m, x, x.repeat(sh, axis=1).repeat(sw, axis=2), compiled=size == (2, 2))
    with pytest.raises(NotImplementedError, match="bilinear"):
        layers.UpSampling2D(interpolation="bilinear")


# -- activations -------------------------------------------------------------------------------
X = np.linspace(-7, 7, 29, dtype=np.float32).reshape(1, 29)
SELU_A, SELU_S = 1.6732632423543772, 1.0507009873554805
ERF = np.vectorize(math.erf)

ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "selu": lambda x: np.where(x > 0, SELU_S * x, SELU_S * SELU_A * (np.exp(x) - 1)),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "gelu": lambda x: 0.5 * x * (1 + ERF(x / np.sqrt(2))),   # Keras' default: exact
    "swish": lambda x: x / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),    # Keras 3: relu6(x + 3) / 6
    "hard_silu": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "relu6": lambda x: np.clip(x, 0, 6),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "exponential": np.exp,
    "linear": lambda x: x,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_names(name):
    m = kiln.Sequential([kiln.Input(shape=(29,)), layers.Activation(name)])
    want = ACTIVATIONS[name](X.astype(np.float64))
    check(m, X, want, rtol=2e-5, atol=2e-6, compiled=name in ("gelu", "selu", "hard_sigmoid"))


def test_gelu_approximate_and_unknown_names():
    x = X.astype(np.float64)
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    m = kiln.Sequential([kiln.Input(shape=(29,)), layers.Activation(
        lambda v: kiln.activations.gelu(v, approximate=True))])
    check(m, X, tanh_form, rtol=2e-5, atol=2e-6, compiled=False)
    with pytest.raises(ValueError) as e:
        layers.Dense(2, activation="gelux")
    for known in ("gelu", "hard_sigmoid", "selu", "swish", "exponential", "'gelux'"):
        assert known in str(e.value)


@pytest.mark.parametrize("kw", [{}, {"max_value": 6.0}, {"negative_slope": 0.1},
                                {"threshold": 1.5}, {"max_value": 2.5, "negative_slope": 0.2,
                                                     "threshold": 1.0}])
def test_relu_layer(kw):
    mv, ns, th = kw.get("max_value"), kw.get("negative_slope", 0.0), kw.get("threshold", 0.0)
    x = X.astype(np.float64)
    want = np.where(x > th, x, ns * (x - th))
    if mv is not None:
        want = np.where(x >= mv, mv, want)
    m = kiln.Sequential([kiln.Input(shape=(29,)), layers.ReLU(**kw)])
    check(m, X, want, rtol=1e-6, atol=1e-6, compiled=len(kw) == 3)
    with pytest.raises(ValueError, match="cannot be a negative value"):
        layers.ReLU(max_value=-1)


def test_relu_negative_threshold_with_max_value_clips_like_keras():
    # Keras' ReLU.static_call computes x * (x > threshold), then clips to [0, max_value],
    # then subtracts negative_slope * relu(threshold - x): with threshold -1, an input of
    # -0.5 gives 0 (clipped), -2 gives 0.2 * (-2 + 1)
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.ReLU(2.5, 0.2, -1.0)])
    x = np.array([[-2.0, -0.5, 1.0, 3.0]], np.float32)
    check(m, x, [[-0.2, 0.0, 1.0, 2.5]], rtol=1e-6, atol=1e-6, compiled=False)


def test_leaky_relu_elu_softmax_prelu_layers():
    x = X.astype(np.float64)
    assert layers.LeakyReLU().negative_slope == 0.3
    inp = kiln.Input(shape=(29,))
    m = kiln.Model(inp, [layers.LeakyReLU()(inp), layers.LeakyReLU(negative_slope=0.05)(inp),
                         layers.ELU(alpha=0.7)(inp)])
    want = [np.where(x > 0, x, 0.3 * x), np.where(x > 0, x, 0.05 * x),
            np.where(x > 0, x, 0.7 * (np.exp(x) - 1))]
    for got, w in zip(m.predict(X), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)
    t = rand(2, 3, 4)
    sm = kiln.Sequential([kiln.Input(shape=(3, 4)), layers.Softmax(axis=1)])
    e = np.exp(t - t.max(axis=1, keepdims=True))
    check(sm, t, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6, compiled=False)
    sm2 = kiln.Sequential([kiln.Input(shape=(3, 4)), layers.Softmax(axis=(1, 2))])
    e = np.exp(t)
    check(sm2, t, e / e.sum(axis=(1, 2), keepdims=True), rtol=1e-5, atol=1e-6, compiled=False)
    pr = layers.PReLU(shared_axes=[1])
    pm = kiln.Sequential([kiln.Input(shape=(3, 4)), pr])
    alpha = rand(1, 4)
    pr.set_weights([alpha])
    assert pm.count_params() == 4
    check(pm, t, np.where(t > 0, t, alpha * t), compiled=False)


# -- preprocessing -------------------------------------------------------------------------------
def test_rescaling():
    m = kiln.Sequential([kiln.Input(shape=(4, 4, 3), dtype="int32"),
                         layers.Rescaling(1 / 255.0, offset=-0.5)])
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype(np.int32)
    check(m, x, x / 255.0 - 0.5, rtol=1e-6, atol=1e-6)
    per_channel = kiln.Sequential([kiln.Input(shape=(2, 3)), layers.Rescaling([1.0, 2.0, 3.0])])
    y = rand(2, 2, 3)
    check(per_channel, y, y * [1, 2, 3], compiled=False)


def test_normalization_adapt_and_given_statistics():
    data = rand(50, 3) * [1.0, 2.0, 3.0] + [0.5, -1.0, 4.0]
    norm = layers.Normalization()
    norm.adapt(data)
    assert [w.name for w in norm.weights] == ["mean", "variance", "count"]
    assert norm.count.shape == () and norm.count.dtype == "int64"
    assert norm.trainable_weights == [] and norm.count_params() == 3 + 3 + 1
    np.testing.assert_allclose(norm.weights[0].numpy(), data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(norm.weights[1].numpy(), data.var(axis=0), rtol=1e-5)
    m = kiln.Sequential([kiln.Input(shape=(3,)), norm])
    x = rand(4, 3)
    want = (x - data.mean(axis=0)) / np.sqrt(data.var(axis=0))
    check(m, x, want, rtol=1e-5, atol=1e-5)
    given = layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.0], invert=False)
    gm = kiln.Sequential([kiln.Input(shape=(2,)), given])
    assert given.weights == [] and gm.count_params() == 0
    y = rand(3, 2)
    check(gm, y, (y - [1.0, 2.0]) / np.maximum(np.sqrt([4.0, 0.0]), 1e-7), rtol=1e-5,
          compiled=False)
    inv = kiln.Sequential([kiln.Input(shape=(2,)), layers.Normalization(
        mean=[1.0, 2.0], variance=[4.0, 9.0], invert=True)])
    check(inv, y, y * [2.0, 3.0] + [1.0, 2.0], compiled=False)
    with pytest.raises(ValueError, match="both `mean` and `variance` must be set"):
        layers.Normalization(mean=1.0)
    # a given mean / variance aligns with the kept axes (axis 1 of (None, 3, 2) here)
    mid = kiln.Sequential([kiln.Input(shape=(3, 2)), layers.Normalization(
        axis=1, mean=[0.0, 1.0, 2.0], variance=[1.0, 4.0, 16.0])])
    z = rand(2, 3, 2)
    check(mid, z, (z - [[0.0], [1.0], [2.0]]) / [[1.0], [2.0], [4.0]], rtol=1e-5,
          compiled=False)


def test_normalization_over_image_channels_by_adapt():
    imgs = rand(8, 4, 5, 2) * [1.0, 3.0] + [2.0, -2.0]
    norm = layers.Normalization(axis=-1)
    norm.adapt([imgs[:5], imgs[5:]])   # an iterable of batches: all of them together
    m = kiln.Sequential([kiln.Input(shape=(4, 5, 2)), norm])
    mu, var = imgs.mean(axis=(0, 1, 2)), imgs.var(axis=(0, 1, 2))
    check(m, imgs[:3], (imgs[:3] - mu) / np.sqrt(var), rtol=1e-4, atol=1e-4, compiled=False)
