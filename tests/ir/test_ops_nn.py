"""conv2d, conv2d_transpose, max_pool2d and avg_pool2d through the interpreter,
against independent formulas written here: im2col (sliding windows) + one einsum for
conv, per-pixel scatter-add loops and the adjoint identity for the transposed conv,
sliding windows with -inf / NaN padding for pooling; and their type errors."""
import itertools

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from kiln.ir import DType, Graph, OpTypeError, TensorType

from .test_ops import run_op

rng = np.random.default_rng(11)
COVERED = {"conv2d", "conv2d_transpose", "max_pool2d", "avg_pool2d"}
F = lambda *s: TensorType(s, DType.f32)  # noqa: E731


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def same_pads(size, k, s, d=1):
    """TensorFlow/Keras 'same': out = ceil(size / s), the total padding split low-first."""
    eff = d * (k - 1) + 1
    total = max((-(-size // s) - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def conv_formula(x, w, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1):
    """im2col: every dilated window as a [kh,kw] block, strided, then one einsum per group."""
    (sh, sw), (dh, dw) = strides, dilations
    kh, kw, cg, o = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[:2], pads[2:], (0, 0)))
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))
    win = win[:, ::sh, ::sw, :, ::dh, ::dw]                       # [N, Ho, Wo, C, kh, kw]
    n, ho, wo = win.shape[:3]
    win = win.reshape(n, ho, wo, groups, cg, kh, kw)
    wg = w.astype(np.float64).reshape(kh, kw, cg, groups, o // groups)
    return np.einsum("nyxgcij,ijcgo->nyxgo", win, wg).reshape(n, ho, wo, o)


def close(got, want, dtype=np.float32):
    assert got.dtype == dtype and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max(initial=0)))


# -- conv2d ------------------------------------------------------------------------------------
CONV = [  # x shape, kernel shape, strides, dilations, pads, groups
    ((1, 5, 5, 3), (3, 3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0), 1),                  # valid
    ((2, 5, 5, 3), (3, 3, 3, 4), (1, 1), (1, 1), (1, 1, 1, 1), 1),                  # same
    ((2, 7, 6, 2), (3, 2, 2, 5), (2, 2), (1, 1), (1, 1, 0, 1), 1),                  # strided, asymmetric
    ((1, 7, 7, 3), (3, 3, 3, 2), (1, 2), (2, 1), (2, 2, 1, 1), 1),                  # dilation
    ((2, 6, 5, 4), (3, 3, 2, 6), (1, 1), (1, 1), (1, 1, 1, 1), 2),                  # groups
    ((1, 5, 5, 4), (3, 3, 1, 8), (2, 1), (1, 1), (0, 1, 1, 1), 4),                  # depthwise, multiplier 2
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),                  # all ones
    ((2, 1, 9, 3), (1, 4, 3, 2), (1, 3), (1, 2), (0, 0, 3, 0), 1),                  # Conv1D as H=1, causal
    ((1, 4, 4, 2), (4, 4, 2, 3), (3, 3), (1, 1), (0, 0, 0, 0), 1),                  # window = image
]


@pytest.mark.parametrize("xs,ws,strides,dilations,pads,groups", CONV)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d(xs, ws, strides, dilations, pads, groups, dtype):
    x, w = randn(*xs, dtype=dtype), randn(*ws, dtype=dtype)
    got, t = run_op("conv2d", x, w, strides=strides, dilations=dilations, pads=pads, groups=groups)
    want = conv_formula(x, w, strides, dilations, pads, groups)
    assert t == TensorType(want.shape, DType.from_numpy(dtype))
    close(got, want, dtype)


@pytest.mark.parametrize("size,k,s,d", [(5, 3, 1, 1), (6, 3, 2, 1), (7, 2, 2, 1), (7, 3, 1, 2), (5, 1, 3, 1)])
def test_conv2d_same_padding_keeps_ceil_size(size, k, s, d):
    x, w = randn(1, size, size, 2), randn(k, k, 2, 3)
    pads = same_pads(size, k, s, d) * 2
    got, t = run_op("conv2d", x, w, strides=(s, s), dilations=(d, d), pads=pads)
    assert t.shape[1:3] == (-(-size // s),) * 2
    close(got, conv_formula(x, w, (s, s), (d, d), pads))


def test_depthwise_is_grouped_conv_with_reshaped_kernel():
    # DepthwiseConv2D(depth_multiplier=2): kernel [kh,kw,C,m], output channel c*m + j
    x, dw = randn(2, 5, 5, 3), randn(3, 3, 3, 2)
    got, _ = run_op("conv2d", x, dw.reshape(3, 3, 1, 6), pads=(1, 1, 1, 1), groups=3)
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((2, 5, 5, 6))
    for c, j, i, k in itertools.product(range(3), range(2), range(3), range(3)):
        want[..., c * 2 + j] += xp[:, i:i + 5, k:k + 5, c] * dw[i, k, c, j]
    close(got, want)


# -- conv2d_transpose ---------------------------------------------------------------------------
def conv_transpose_scatter(x, w, strides, dilations, pads, output_padding):
    """Each input pixel adds w[i,j] @ x[pixel] at (y*sh + i*dh, x*sw + j*dw), then crop."""
    n, h, wd, _ = x.shape
    kh, kw, o, _ = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    ho = (h - 1) * sh + dh * (kh - 1) + 1 - pads[0] - pads[1] + output_padding[0]
    wo = (wd - 1) * sw + dw * (kw - 1) + 1 - pads[2] - pads[3] + output_padding[1]
    full = np.zeros((n, pads[0] + ho + h * sh + kh * dh, pads[2] + wo + wd * sw + kw * dw, o))
    for b, y, xx, i, j in itertools.product(range(n), range(h), range(wd), range(kh), range(kw)):
        full[b, y * sh + i * dh, xx * sw + j * dw] += w[i, j].astype(np.float64) @ x[b, y, xx].astype(np.float64)
    return full[:, pads[0]:pads[0] + ho, pads[2]:pads[2] + wo]


CONV_T = [  # x shape, kernel (kh,kw,out,in), strides, dilations, pads, output_padding
    ((1, 3, 3, 2), (3, 3, 4, 2), (1, 1), (1, 1), (0, 0, 0, 0), (0, 0)),   # valid, stride 1
    ((2, 3, 4, 2), (3, 3, 3, 2), (2, 2), (1, 1), (0, 0, 0, 0), (0, 0)),   # valid, stride 2
    ((2, 3, 4, 2), (3, 3, 3, 2), (2, 2), (1, 1), (0, 1, 0, 1), (0, 0)),   # same (Keras: out = in * s)
    ((1, 3, 3, 1), (2, 2, 2, 1), (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),   # valid with k < s: Keras adds s - k
    ((1, 4, 3, 3), (3, 2, 2, 3), (2, 1), (2, 1), (1, 1, 0, 0), (1, 0)),   # dilation + output_padding
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0), (0, 0)),
    ((1, 2, 2, 2), (3, 3, 2, 2), (1, 1), (1, 1), (2, 0, 1, 1), (0, 0)),   # asymmetric crop
]


@pytest.mark.parametrize("xs,ws,strides,dilations,pads,op", CONV_T)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_transpose(xs, ws, strides, dilations, pads, op, dtype):
    x, w = randn(*xs, dtype=dtype), randn(*ws, dtype=dtype)
    got, t = run_op("conv2d_transpose", x, w, strides=strides, dilations=dilations, pads=pads,
                    output_padding=op)
    want = conv_transpose_scatter(x, w, strides, dilations, pads, op)
    assert t == TensorType(want.shape, DType.from_numpy(dtype))
    close(got, want, dtype)


@pytest.mark.parametrize("xs,ws,strides,dilations,pads,op", [c for c in CONV_T if max(c[5]) < min(c[2])])
def test_conv2d_transpose_is_the_adjoint_of_conv2d(xs, ws, strides, dilations, pads, op):
    # <conv_t(x, w), z> == <x, conv2d(z, w)>: Keras' (kh,kw,out,in) kernel is conv2d's HWIO
    x, w = randn(*xs, dtype=np.float64), randn(*ws, dtype=np.float64)
    y, _ = run_op("conv2d_transpose", x, w, strides=strides, dilations=dilations, pads=pads,
                  output_padding=op)
    z = randn(*y.shape, dtype=np.float64)
    back = conv_formula(z, w, strides, dilations, pads)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(y * z), np.sum(x * back), rtol=1e-10)


# -- pooling -------------------------------------------------------------------------------------
def pool_windows(x, window, strides, pads, fill):
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[:2], pads[2:], (0, 0)), constant_values=fill)
    return sliding_window_view(xp, tuple(window), axis=(1, 2))[:, ::strides[0], ::strides[1]]


POOL = [  # x shape, window, strides, pads
    ((1, 4, 4, 3), (2, 2), (2, 2), (0, 0, 0, 0)),
    ((2, 5, 5, 2), (2, 2), (2, 2), (0, 1, 0, 1)),       # same, odd size
    ((2, 5, 7, 1), (3, 3), (1, 1), (1, 1, 1, 1)),       # same, stride 1
    ((1, 6, 5, 3), (3, 2), (2, 1), (1, 0, 0, 1)),
    ((1, 1, 7, 2), (1, 3), (1, 2), (0, 0, 1, 1)),       # 1D pooling as H=1
    ((1, 3, 3, 1), (3, 3), (3, 3), (0, 0, 0, 0)),       # global
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("xs,window,strides,pads", POOL)
def test_max_pool2d(xs, window, strides, pads):
    x = randn(*xs)
    got, t = run_op("max_pool2d", x, window=window, strides=strides, pads=pads)
    want = pool_windows(x, window, strides, pads, -np.inf).max(axis=(-2, -1))
    assert t == F(*want.shape)
    close(got, want)


@pytest.mark.parametrize("xs,window,strides,pads", POOL)
def test_avg_pool2d_divides_by_covered_elements(xs, window, strides, pads):
    x = randn(*xs)
    got, t = run_op("avg_pool2d", x, window=window, strides=strides, pads=pads)
    want = np.nanmean(pool_windows(x, window, strides, pads, np.nan), axis=(-2, -1))
    assert t == F(*want.shape)
    close(got, want)


def test_pool_corner_windows_and_nan():
    x = np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 3, 3, 1)  # 1..9
    got, _ = run_op("avg_pool2d", x, window=(2, 2), strides=(2, 2), pads=(0, 1, 0, 1))
    assert got[0, :, :, 0].tolist() == [[3.0, 4.5], [7.5, 9.0]]   # 1+2+4+5 /4, 3+6 /2, 7+8 /2, 9
    x = -np.ones((1, 2, 2, 1), np.float32)
    got, _ = run_op("max_pool2d", x, window=(2, 2), strides=(1, 1), pads=(1, 0, 1, 0))
    assert got[0, :, :, 0].tolist() == [[-1.0, -1.0], [-1.0, -1.0]]  # padding never wins
    x[0, 0, 0, 0] = np.nan
    got, _ = run_op("max_pool2d", x, window=(2, 2), strides=(1, 1), pads=(0, 0, 0, 0))
    assert np.isnan(got).all()


def test_batch_stays_symbolic():
    g = Graph()
    x = g.add_input("x", F("N", 8, 8, 3))
    y = g.op("conv2d", x, g.add_param("w", randn(3, 3, 3, 4)), strides=(2, 2), pads=(0, 1, 0, 1))
    z = g.op("max_pool2d", y, window=(2, 2), strides=(2, 2))
    u = g.op("conv2d_transpose", z, g.add_param("wt", randn(3, 3, 5, 4)), strides=(2, 2), pads=(0, 1, 0, 1))
    assert (y.type, z.type, u.type) == (F("N", 4, 4, 4), F("N", 2, 2, 4), F("N", 4, 4, 5))


# -- type errors --------------------------------------------------------------------------------------
ERRORS = [
    ("conv2d", [F(1, 5, 5), F(3, 3, 5, 2)], {}, r"conv2d: input must be NHWC \(rank 4\), got f32\[1,5,5\]"),
    ("conv2d", [F(1, 5, 5, 3), F(3, 3, 3)], {}, r"conv2d: kernel must be \[kh,kw,C/groups,O\] \(rank 4, static\), "
                                                r"got f32\[3,3,3\]"),
    ("conv2d", [F(1, 5, 5, 3), F(3, 3, 2, 4)], {}, r"conv2d: kernel f32\[3,3,2,4\] \(HWIO\) expects 2 input "
                                                   r"channel\(s\) per group; input f32\[1,5,5,3\] has 3"),
    ("conv2d", [F(1, 5, 5, 4), F(3, 3, 2, 3)], {"groups": 2}, r"conv2d: groups=2 must divide the input channels "
                                                              r"\(4\) and the output channels \(3\)"),
    ("conv2d", [F(1, 5, 5, 4), F(3, 3, 4, 4)], {"groups": 0}, r"conv2d: groups=0 must divide"),
    ("conv2d", [F(1, 2, 5, 3), F(3, 3, 3, 4)], {}, r"conv2d: the window \(size 3, dilation 1\) does not fit the "
                                                   r"padded input \(2 \+ 0 \+ 0\) of f32\[1,2,5,3\]"),
    ("conv2d", [F(1, 5, 5, 3), F(3, 3, 3, 4)], {"dilations": (3, 1)}, r"conv2d: the window \(size 3, dilation 3\)"),
    ("conv2d", [F(1, 5, 5, 3), F(3, 3, 3, 4)], {"strides": (0, 1)}, r"conv2d: attribute strides must be 2 "
                                                                    r"integers >= 1, got \[0, 1\]"),
    ("conv2d", [F(1, 5, 5, 3), F(3, 3, 3, 4)], {"pads": (1, 1)}, r"conv2d: attribute pads must be 4 integers >= 0"),
    ("conv2d", [F("N", "H", 5, 3), F(3, 3, 3, 4)], {}, r"conv2d: input height, width and channels must be static"),
    ("conv2d", [TensorType((1, 5, 5, 3), DType.i32)] * 2, {}, r"conv2d: expects floating-point operands"),
    ("conv2d", [F(1, 5, 5, 3), TensorType((3, 3, 3, 4), DType.f64)], {}, r"conv2d: operand dtypes differ"),
    ("conv2d_transpose", [F(1, 5, 5, 3), F(3, 3, 4, 2)], {}, r"conv2d_transpose: kernel f32\[3,3,4,2\] "
                                                             r"\(kh,kw,out,in\) expects 2 input channel\(s\); "
                                                             r"input f32\[1,5,5,3\] has 3"),
    ("conv2d_transpose", [F(1, 1, 1, 3), F(1, 1, 4, 3)], {"pads": (1, 0, 0, 0)},
     r"conv2d_transpose: pads \[1, 0, 0, 0\] crop away the whole output"),
    ("conv2d_transpose", [F(1, 2, 2, 3), F(1, 1, 4, 3)], {"output_padding": (-1, 0)},
     r"conv2d_transpose: attribute output_padding must be 2 integers >= 0"),
    ("max_pool2d", [F(1, 4, 4, 3)], {"window": (2, 2)}, r"max_pool2d: missing required attribute strides"),
    ("max_pool2d", [F(1, 4, 4, 3)], {"window": (2, 2), "strides": (2, 2), "pads": (2, 0, 0, 0)},
     r"max_pool2d: pads \[2, 0, 0, 0\] must be smaller than the window \[2, 2\]"),
    ("avg_pool2d", [F(1, 1, 4, 3)], {"window": (2, 2), "strides": (1, 1)},
     r"avg_pool2d: the window \(size 2, dilation 1\) does not fit"),
    ("avg_pool2d", [F(1, 4, 4)], {"window": (2, 2), "strides": (1, 1)}, r"avg_pool2d: input must be NHWC"),
    ("avg_pool2d", [F(1, 4, 4, 1)], {"window": (2,), "strides": (1, 1)},
     r"avg_pool2d: attribute window must be 2 integers >= 1, got \[2\]"),
]


@pytest.mark.parametrize("op,types,attrs,msg", ERRORS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_type_errors(op, types, attrs, msg):
    g = Graph()
    ins = [g.add_input(f"x{i}", t) for i, t in enumerate(types)]
    with pytest.raises(OpTypeError, match=msg):
        g.op(op, *ins, **attrs)
    assert g.nodes == []
