"""Independent numpy references for the layer tests: convolution, transposed
convolution (as the adjoint of convolution), pooling and Keras' padding arithmetic,
written from the definitions (loops over output positions), not from kiln's ops."""
import math

import numpy as np


def same_pads(n, k, s, d=1):
    """TensorFlow 'SAME': out = ceil(n / s), total padding split low-first."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def pads_for(spatial, kernel, strides, dilations, padding):
    if padding == "valid":
        return [(0, 0)] * len(spatial)
    return [same_pads(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilations)]


def conv2d(x, w, strides=(1, 1), padding="valid", dilations=(1, 1), groups=1, pads=None):
    """Cross-correlation, NHWC x HWIO (I = C / groups), by loops over output pixels."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    kh, kw, cg, o = w.shape
    if pads is None:
        pads = pads_for(x.shape[1:3], (kh, kw), strides, dilations, padding)
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    n, h, wd, c = x.shape
    eh, ew = (kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1
    ho, wo = (h - eh) // strides[0] + 1, (wd - ew) // strides[1] + 1
    og = o // groups
    out = np.zeros((n, ho, wo, o))
    for i in range(ho):
        for j in range(wo):
            y0, x0 = i * strides[0], j * strides[1]
            patch = x[:, y0:y0 + eh:dilations[0], x0:x0 + ew:dilations[1], :]
            for g in range(groups):
                out[:, i, j, g * og:(g + 1) * og] = np.einsum(
                    "nhwc,hwco->no", patch[..., g * cg:(g + 1) * cg], w[..., g * og:(g + 1) * og])
    return out


def conv1d(x, w, stride=1, padding="valid", dilation=1, groups=1):
    if padding == "causal":
        x = np.pad(x, ((0, 0), ((w.shape[0] - 1) * dilation, 0), (0, 0)))
        padding = "valid"
    return conv2d(x[:, None], w[None], (1, stride), padding, (1, dilation), groups)[:, 0]


def deconv_length(n, k, s, padding, output_padding=None, d=1):
    """Keras' ``deconv_output_length``."""
    k = k + (k - 1) * (d - 1)
    if output_padding is None:
        return n * s + max(k - s, 0) if padding == "valid" else n * s
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * s + k - 2 * pad + output_padding


def conv2d_transpose(x, w, strides, padding, output_padding=None, dilations=(1, 1)):
    """TensorFlow's conv2d_transpose = the adjoint of the forward convolution from the
    output size (Keras' ``deconv_output_length``) to the input size: build that linear
    map's matrix from basis images and apply its transpose. ``w`` is Keras' (kh, kw,
    filters, in) kernel, i.e. the forward kernel (filters -> in) in HWIO."""
    n, h, wd, c = x.shape
    kh, kw, f, _ = w.shape
    ops_ = output_padding or (None, None)
    ho = deconv_length(h, kh, strides[0], padding, ops_[0], dilations[0])
    wo = deconv_length(wd, kw, strides[1], padding, ops_[1], dilations[1])
    pads = [(0, 0), (0, 0)]
    if padding == "same":   # TF pads the forward conv so that it maps (ho, wo) to (h, wd)
        for a, (size_in, size_out, k) in enumerate(((ho, h, kh), (wo, wd, kw))):
            total = max((size_out - 1) * strides[a] + (k - 1) * dilations[a] + 1 - size_in, 0)
            pads[a] = (total // 2, total - total // 2)
    basis = np.eye(ho * wo * f).reshape(ho * wo * f, ho, wo, f)
    fwd = conv2d(basis, w, strides, dilations=dilations, pads=pads)   # (ho*wo*f, H', W', c)
    fwd = fwd[:, :h, :wd, :]
    full = np.zeros((ho * wo * f, h, wd, c))
    full[:, :fwd.shape[1], :fwd.shape[2], :] = fwd
    mat = full.reshape(ho * wo * f, h * wd * c)
    return (x.reshape(n, -1).astype(np.float64) @ mat.T).reshape(n, ho, wo, f)


def pool2d(x, window, strides, padding, kind):
    """Max / average over windows; padded positions never count (TF semantics)."""
    n, h, wd, c = x.shape
    if padding == "same":
        ph, pw = same_pads(h, window[0], strides[0]), same_pads(wd, window[1], strides[1])
        ho, wo = math.ceil(h / strides[0]), math.ceil(wd / strides[1])
    else:
        ph = pw = (0, 0)
        ho, wo = (h - window[0]) // strides[0] + 1, (wd - window[1]) // strides[1] + 1
    out = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            y0, x0 = i * strides[0] - ph[0], j * strides[1] - pw[0]
            ys, xs = slice(max(y0, 0), min(y0 + window[0], h)), slice(max(x0, 0),
                                                                      min(x0 + window[1], wd))
            win = x[:, ys, xs, :].astype(np.float64)
            out[:, i, j] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return out
