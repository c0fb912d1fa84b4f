"""Convolution layers vs independent numpy references (tests/frontend/np_refs.py):
interpreter and compiled predict, Keras' weight shapes and parameter counts."""
import numpy as np
import pytest

import kiln
from kiln import layers

from . import np_refs as ref

pytestmark = pytest.mark.usefixtures("fast_compile")
RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def randomize(model):
    model.set_weights([rand(*w.shape) for w in model.get_weights()])


def check(model, x, expected, rtol=1e-4, atol=1e-4, compiled=True):
    """The interpreter on kiln.lower(model) and the compiled predict both equal ``expected``."""
    g = kiln.lower(model)
    kiln.ir.verify(g)
    xs = x if isinstance(x, list) else [x]
    np.testing.assert_allclose(kiln.interpret(g, *xs), expected, rtol=rtol, atol=atol)
    if compiled:
        np.testing.assert_allclose(model.predict(x), expected, rtol=rtol, atol=atol)


# -- Conv2D ---------------------------------------------------------------------------------
CONV2D_CASES = [  # (input hwc, filters, kernel, strides, padding, dilation, groups, batch)
    ((7, 9, 3), 4, (3, 3), (1, 1), "valid", (1, 1), 1, 2),
    ((7, 9, 3), 4, (3, 3), (1, 1), "same", (1, 1), 1, 1),
    ((8, 7, 2), 3, (3, 2), (2, 3), "same", (1, 1), 1, 3),
    ((8, 7, 2), 3, (3, 2), (2, 3), "valid", (1, 1), 1, 1),
    ((9, 9, 2), 2, (4, 4), (3, 3), "same", (1, 1), 1, 2),      # even kernel, odd padding total
    ((9, 10, 3), 5, (3, 3), (1, 1), "same", (2, 3), 1, 2),     # dilation
    ((9, 10, 3), 5, (2, 3), (1, 1), "valid", (2, 2), 1, 1),
    ((6, 5, 4), 6, (3, 3), (2, 2), "same", (1, 1), 2, 2),      # groups
    ((5, 5, 6), 3, (1, 1), (1, 1), "valid", (1, 1), 3, 1),
]


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d(case):
    hwc, f, k, s, pad, d, groups, batch = case
    layer = layers.Conv2D(f, k, strides=s, padding=pad, dilation_rate=d, groups=groups,
                          activation="relu")
    m = kiln.Sequential([kiln.Input(shape=hwc), layer])
    randomize(m)
    w, b = layer.get_weights()
    assert [v.name for v in layer.weights] == ["kernel", "bias"]
    assert w.shape == k + (hwc[2] // groups, f) and b.shape == (f,)
    assert layer.count_params() == k[0] * k[1] * (hwc[2] // groups) * f + f
    x = rand(batch, *hwc)
    expected = np.maximum(ref.conv2d(x, w, s, pad, d, groups) + b, 0)
    assert m.output_shape == (None,) + expected.shape[1:]
    check(m, x, expected, compiled=case in CONV2D_CASES[::3])


def test_conv2d_int_arguments_no_bias_and_initializer():
    layer = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)
    m = kiln.Sequential([kiln.Input(shape=(11, 11, 5)), layer])
    assert layer.kernel_size == (3, 3) and layer.strides == (2, 2)
    assert [v.name for v in layer.weights] == ["kernel"] and m.count_params() == 3 * 3 * 5 * 8
    limit = np.sqrt(6 / (3 * 3 * 5 + 3 * 3 * 8))   # glorot_uniform with conv fans
    w = layer.kernel.numpy()
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.8 * limit
    assert m.output_shape == (None, 6, 6, 8)
    x = rand(2, 11, 11, 5)
    check(m, x, ref.conv2d(x, w, (2, 2), "same"))


# -- Conv1D ---------------------------------------------------------------------------------
@pytest.mark.parametrize("steps,c,f,k,s,pad,d,groups,compiled", [
    (10, 3, 4, 3, 1, "valid", 1, 1, True), (11, 3, 4, 3, 2, "same", 1, 1, False),
    (9, 2, 3, 3, 1, "causal", 2, 1, True), (8, 4, 2, 2, 1, "same", 3, 2, False),
])
def test_conv1d(steps, c, f, k, s, pad, d, groups, compiled):
    layer = layers.Conv1D(f, k, strides=s, padding=pad, dilation_rate=d, groups=groups)
    m = kiln.Sequential([kiln.Input(shape=(steps, c)), layer])
    randomize(m)
    w, b = layer.get_weights()
    assert w.shape == (k, c // groups, f) and m.count_params() == k * (c // groups) * f + f
    x = rand(3, steps, c)
    check(m, x, ref.conv1d(x, w, s, pad, d, groups) + b, compiled=compiled)


# -- Conv2DTranspose -------------------------------------------------------------------------
TRANSPOSE_CASES = [  # (input hwc, filters, kernel, strides, padding, output_padding, dilation)
    ((4, 5, 3), 2, (3, 3), (1, 1), "valid", None, (1, 1)),
    ((4, 5, 3), 2, (3, 3), (2, 2), "valid", None, (1, 1)),
    ((4, 5, 3), 2, (3, 3), (2, 2), "same", None, (1, 1)),
    ((3, 4, 2), 3, (2, 4), (3, 2), "same", None, (1, 1)),
    ((3, 4, 2), 3, (2, 2), (3, 3), "valid", None, (1, 1)),       # kernel < stride: gaps
    ((3, 4, 2), 3, (3, 3), (2, 2), "same", (1, 1), (1, 1)),
    ((3, 4, 2), 3, (3, 2), (3, 2), "valid", (2, 1), (1, 1)),
    ((4, 4, 2), 2, (3, 3), (1, 1), "same", None, (2, 2)),        # dilation
    ((5, 4, 1), 2, (4, 3), (2, 2), "same", (1, 0), (1, 1)),
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv2d_transpose(case):
    hwc, f, k, s, pad, op, d = case
    layer = layers.Conv2DTranspose(f, k, strides=s, padding=pad, output_padding=op,
                                   dilation_rate=d)
    m = kiln.Sequential([kiln.Input(shape=hwc), layer])
    randomize(m)
    w, b = layer.get_weights()
    assert w.shape == k + (f, hwc[2]) and b.shape == (f,)   # (kh, kw, filters, in)
    assert m.count_params() == k[0] * k[1] * f * hwc[2] + f
    x = rand(2, *hwc)
    expected = ref.conv2d_transpose(x, w, s, pad, op, d) + b
    assert m.output_shape == (None,) + expected.shape[1:]
    check(m, x, expected, compiled=case in TRANSPOSE_CASES[1::3])


def test_conv2d_transpose_output_shapes_match_keras_formula():
    # Keras' deconv_output_length, spelled out: valid: n*s + max(k - s, 0); same: n*s
    assert layers.Conv2DTranspose(1, 3, strides=2).compute_output_shape((None, 4, 5, 1)) \
        == (None, 9, 11, 1)
    assert layers.Conv2DTranspose(1, 3, strides=2, padding="same").compute_output_shape(
        (None, 4, 5, 1)) == (None, 8, 10, 1)
    assert layers.Conv2DTranspose(1, 2, strides=3).compute_output_shape((None, 4, 5, 1)) \
        == (None, 12, 15, 1)
    with pytest.raises(ValueError, match="Strides must be greater than output padding"):
        layers.Conv2DTranspose(1, 3, strides=2, output_padding=2)


# -- DepthwiseConv2D / SeparableConv2D -------------------------------------------------------
@pytest.mark.parametrize("hwc,k,s,pad,dm,d,compiled", [
    ((6, 7, 3), (3, 3), (1, 1), "valid", 1, (1, 1), True),
    ((6, 7, 3), (3, 3), (2, 2), "same", 2, (1, 1), False),
    ((7, 7, 2), (2, 3), (1, 1), "same", 3, (2, 1), True),
])
def test_depthwise_conv2d(hwc, k, s, pad, dm, d, compiled):
    layer = layers.DepthwiseConv2D(k, strides=s, padding=pad, depth_multiplier=dm,
                                   dilation_rate=d)
    m = kiln.Sequential([kiln.Input(shape=hwc), layer])
    randomize(m)
    w, b = layer.get_weights()
    c = hwc[2]
    assert [v.name for v in layer.weights] == ["kernel", "bias"]
    assert w.shape == k + (c, dm) and b.shape == (c * dm,)
    assert m.count_params() == k[0] * k[1] * c * dm + c * dm
    x = rand(2, *hwc)
    # output channel c*dm + m is input channel c convolved with w[..., c, m]
    expected = np.concatenate([ref.conv2d(x[..., ci:ci + 1], w[..., ci:ci + 1, :], s, pad, d)
                               for ci in range(c)], axis=-1) + b
    check(m, x, expected, compiled=compiled)


@pytest.mark.parametrize("hwc,f,k,s,pad,dm", [((6, 7, 3), 4, (3, 3), (1, 1), "same", 1),
                                              ((8, 7, 2), 5, (3, 2), (2, 2), "valid", 2)])
def test_separable_conv2d(hwc, f, k, s, pad, dm):
    layer = layers.SeparableConv2D(f, k, strides=s, padding=pad, depth_multiplier=dm)
    m = kiln.Sequential([kiln.Input(shape=hwc), layer])
    randomize(m)
    dw, pw, b = layer.get_weights()
    c = hwc[2]
    assert [v.name for v in layer.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert dw.shape == k + (c, dm) and pw.shape == (1, 1, c * dm, f) and b.shape == (f,)
    assert m.count_params() == k[0] * k[1] * c * dm + c * dm * f + f
    x = rand(2, *hwc)
    depth = np.concatenate([ref.conv2d(x[..., ci:ci + 1], dw[..., ci:ci + 1, :], s, pad)
                            for ci in range(c)], axis=-1)
    expected = np.einsum("nhwc,cf->nhwf", depth, pw[0, 0]) + b
    check(m, x, expected)


# -- argument checks and errors -------------------------------------------------------------
def test_conv_argument_errors():
    with pytest.raises(ValueError, match="evenly divisible by the number of groups"):
        layers.Conv2D(5, 3, groups=2)
    with pytest.raises(ValueError, match="`strides > 1` not supported in conjunction with"):
        layers.Conv2D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="kernel_size"):
        layers.Conv2D(2, (3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(2, 3, padding="causal")
    with pytest.raises(ValueError, match="filters"):
        layers.Conv2D(0, 3)
    with pytest.raises(NotImplementedError, match="channels_first"):
        layers.Conv2D(2, 3, data_format="channels_first")
    with pytest.raises(NotImplementedError, match="kernel_regularizer"):
        layers.Conv2D(2, 3, kernel_regularizer="l2")
    with pytest.raises(ValueError, match="input channels must be evenly divisible"):
        kiln.Sequential([kiln.Input(shape=(5, 5, 3)), layers.Conv2D(4, 3, groups=2)])


def test_conv_called_on_incompatible_shape_names_layer_and_shapes():
    conv = layers.Conv2D(4, 3, name="c1")
    kiln.Sequential([kiln.Input(shape=(8, 8, 3)), conv])
    with pytest.raises(ValueError) as e:
        conv(np.zeros((1, 8, 8, 5), np.float32))
    msg = str(e.value)
    assert '"c1"' in msg and "expected axis -1 of input shape to have value 3" in msg \
        and "(None, 8, 8, 5)" in msg
    with pytest.raises(ValueError, match=r'layer "c2".*expected ndim=4, found ndim=3'):
        kiln.Sequential([kiln.Input(shape=(8, 3)), layers.Conv2D(4, 3, name="c2")])
    with pytest.raises(ValueError, match=r'Conv2D layer "c3".*does not fit'):
        kiln.Sequential([kiln.Input(shape=(2, 2, 1)), layers.Conv2D(1, 3, name="c3")])


# -- the seed program of issue #3 ----------------------------------------------------------
def test_seed_program_compiles_and_matches_numpy(monkeypatch):
    monkeypatch.undo()   # this one runs the default (O3) compile
    import kiln as keras
    from kiln.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
    from kiln.models import Sequential
    model = Sequential([
        Conv2D(filters=32, kernel_size=(3, 3), activation='relu', input_shape=(28, 28, 1)),
        MaxPooling2D((2, 2)),
        Conv2D(filters=64, kernel_size=(3, 3), activation='relu'),
        MaxPooling2D((2, 2)),
        Conv2D(filters=128, kernel_size=(3, 3), activation='relu'),
        Flatten(),
        Dense(units=128, activation='relu'),
        Dropout(rate=0.5),
        Dense(units=10, activation='softmax')])
    assert keras.Sequential is Sequential
    # by hand: 3*3*1*32+32, 3*3*32*64+64, 3*3*64*128+128, 1152*128+128, 128*10+10
    assert [l.count_params() for l in model.layers] == [320, 0, 18496, 0, 73856, 0, 147584,
                                                        0, 1290]
    assert model.count_params() == 241546
    assert model.output_shape == (None, 10)
    x = np.random.default_rng(3).random((3, 28, 28, 1), dtype=np.float32)
    w = [a.astype(np.float64) for a in model.get_weights()]
    h = np.maximum(ref.conv2d(x, w[0]) + w[1], 0)
    h = ref.pool2d(h, (2, 2), (2, 2), "valid", "max")
    h = np.maximum(ref.conv2d(h, w[2]) + w[3], 0)
    h = ref.pool2d(h, (2, 2), (2, 2), "valid", "max")
    h = np.maximum(ref.conv2d(h, w[4]) + w[5], 0)
    h = np.maximum(h.reshape(3, -1) @ w[6] + w[7], 0)
    z = h @ w[8] + w[9]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    expected = e / e.sum(axis=1, keepdims=True)
    check(model, x, expected, rtol=1e-4, atol=1e-6)
