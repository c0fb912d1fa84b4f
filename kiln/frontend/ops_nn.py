"""``kiln.ops``, neural-network ops: convolutions and pooling in Keras' form (channels
last, ``padding="valid"|"same"``), over the IR's ``conv2d`` / ``conv2d_transpose`` /
``max_pool2d`` / ``avg_pool2d``, which take explicit pads.

Keras (TensorFlow) "same" padding, per spatial axis of size ``n`` with window ``k``,
dilation ``d`` and stride ``s``: the output has ``ceil(n / s)`` positions and the
input is padded by ``total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)``, ``total // 2``
before and the rest after. 1D forms run the 2D ops over a height of 1.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import current_graph
from .ops import convert, reshape


def _tuple(v, n: int, what: str) -> tuple:
    t = (v,) * n if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != n or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool)
                              for e in t):
        raise ValueError(f"The `{what}` argument must be a tuple of {n} integers. "
                         f"Received {what}={v!r}")
    return tuple(int(e) for e in t)


def _check_format(data_format, what):
    if data_format not in (None, "channels_last"):
        raise NotImplementedError(f"kiln.ops.{what}: data_format={data_format!r} is not supported "
                                  f"(kiln is channels_last)")


def same_pads(n: int, k: int, s: int, d: int = 1) -> tuple:
    """(before, after) padding of Keras' 'same' for one axis."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def conv_pads(spatial, kernel, strides, dilations, padding) -> tuple:
    """Flat (lo0, hi0, lo1, hi1, ...) pads for ``padding`` ('valid', 'same', or
    'causal' for one spatial axis)."""
    padding = padding.lower()
    if padding == "valid":
        return (0, 0) * len(spatial)
    if padding == "same":
        return tuple(p for n, k, s, d in zip(spatial, kernel, strides, dilations)
                     for p in same_pads(n, k, s, d))
    if padding == "causal" and len(spatial) == 1:
        return ((kernel[0] - 1) * dilations[0], 0)
    raise ValueError(f"Invalid padding {padding!r}: expected 'valid' or 'same'"
                     + (" (or 'causal' in 1D)" if len(spatial) == 1 else ""))


def _lift(x):
    """(N, L, C) -> (N, 1, L, C): 1D data as a 2D image of height 1."""
    return reshape(x, (x.shape[0], 1) + tuple(x.shape[1:]))


def _drop(y):
    return reshape(y, (y.shape[0],) + tuple(y.shape[2:]))


def _rank(x, op) -> int:
    r = x.type.rank - 2
    if r not in (1, 2):
        raise ValueError(f"kiln.ops.{op}: expects a 3D (batch, steps, channels) or 4D (batch, "
                         f"height, width, channels) input, got {x.type}")
    return r


def _spatial(x, r, op):
    dims = tuple(x.shape[1:1 + r])
    if any(isinstance(d, str) for d in dims):
        raise ValueError(f"kiln.ops.{op}: the spatial dimensions of {x.type} must be static")
    return dims


def conv2d_explicit(x, kernel, strides, pads, dilations, groups=1):
    """The IR conv over 1D or 2D channels-last data with explicit pads."""
    r = x.type.rank - 2
    if r == 1:
        k = reshape(kernel, (1,) + tuple(kernel.shape))
        y = current_graph().op("conv2d", _lift(x), k, strides=(1, strides[0]),
                               dilations=(1, dilations[0]), pads=(0, 0) + tuple(pads),
                               groups=groups)
        return _drop(y)
    return current_graph().op("conv2d", x, kernel, strides=tuple(strides),
                              dilations=tuple(dilations), pads=tuple(pads), groups=groups)


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """N-D convolution (N = 1 or 2): kernel (*window, in_channels / groups, filters);
    the number of groups is in_channels // kernel's input channels."""
    _check_format(data_format, "conv")
    x, w = convert(inputs), convert(kernel)
    r = _rank(x, "conv")
    strides, dil = _tuple(strides, r, "strides"), _tuple(dilation_rate, r, "dilation_rate")
    cin, kin = x.shape[-1], w.shape[-2]
    if w.type.rank != r + 2 or kin == 0 or cin % kin:
        raise ValueError(f"kiln.ops.conv: kernel {w.type} does not fit input {x.type} (expects "
                         f"a kernel of rank {r + 2} whose input channels divide {cin})")
    pads = conv_pads(_spatial(x, r, "conv"), w.shape[:r], strides, dil, padding)
    return conv2d_explicit(x, w, strides, pads, dil, groups=cin // kin)


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """Depthwise convolution: kernel (*window, in_channels, depth_multiplier); output
    channel ``c * depth_multiplier + m`` is channel c convolved with kernel[..., c, m]."""
    _check_format(data_format, "depthwise_conv")
    x, w = convert(inputs), convert(kernel)
    r = _rank(x, "depthwise_conv")
    c, m = w.shape[-2], w.shape[-1]
    flat = reshape(w, tuple(w.shape[:r]) + (1, c * m))
    return conv(x, flat, strides, padding, None, dilation_rate)


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid",
                   data_format=None, dilation_rate=1):
    y = depthwise_conv(inputs, depthwise_kernel, strides, padding, data_format, dilation_rate)
    return conv(y, pointwise_kernel, 1, "valid", data_format, 1)


def conv_transpose_pads(n, k, s, d, padding, output_padding):
    """(out_size, (top, bottom), extra) so that ``conv2d_transpose`` with pads
    (top, bottom) and output_padding ``extra`` gives Keras' Conv*Transpose: the output
    size of ``deconv_output_length`` and TensorFlow's placement (the full scatter of
    size (n-1)*s + k_eff, cropped by ``max(full - out, 0) // 2`` in front for 'same',
    by nothing for 'valid')."""
    k_eff = (k - 1) * d + 1
    padding = padding.lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"Invalid padding {padding!r}: expected 'valid' or 'same'")
    if output_padding is None:
        out = n * s + max(k_eff - s, 0) if padding == "valid" else n * s
    else:
        pad = k_eff // 2 if padding == "same" else 0
        out = (n - 1) * s + k_eff - 2 * pad + output_padding
    full = (n - 1) * s + k_eff
    top = max(full - out, 0) // 2 if padding == "same" else 0
    bottom = max(full - top - out, 0)
    extra = out - (full - top - bottom)
    return out, (top, bottom), extra


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None,
                   data_format=None, dilation_rate=1):
    """Transposed convolution as Keras': kernel (*window, filters, in_channels)."""
    _check_format(data_format, "conv_transpose")
    x, w = convert(inputs), convert(kernel)
    r = _rank(x, "conv_transpose")
    strides, dil = _tuple(strides, r, "strides"), _tuple(dilation_rate, r, "dilation_rate")
    ops_ = [None] * r if output_padding is None else list(_tuple(output_padding, r,
                                                                 "output_padding"))
    spatial = _spatial(x, r, "conv_transpose")
    pads, extras = [], []
    for a in range(r):
        _, (lo, hi), extra = conv_transpose_pads(spatial[a], w.shape[a], strides[a], dil[a],
                                                 padding, ops_[a])
        pads += [lo, hi]
        extras.append(extra)
    g = current_graph()
    if r == 1:
        k = reshape(w, (1,) + tuple(w.shape))
        y = g.op("conv2d_transpose", _lift(x), k, strides=(1, strides[0]),
                 dilations=(1, dil[0]), pads=(0, 0) + tuple(pads), output_padding=(0, extras[0]))
        return _drop(y)
    return g.op("conv2d_transpose", x, w, strides=strides, dilations=dil, pads=tuple(pads),
                output_padding=tuple(extras))


def _pool(op, inputs, pool_size, strides, padding, data_format, what):
    _check_format(data_format, what)
    x = convert(inputs)
    r = _rank(x, what)
    window = _tuple(pool_size, r, "pool_size")
    strides = window if strides is None else _tuple(strides, r, "strides")
    pads = conv_pads(_spatial(x, r, what), window, strides, (1,) * r, padding)
    g = current_graph()
    if r == 1:
        y = g.op(op, _lift(x), window=(1, window[0]), strides=(1, strides[0]),
                 pads=(0, 0) + tuple(pads))
        return _drop(y)
    return g.op(op, x, window=window, strides=strides, pads=tuple(pads))


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Max pooling (strides default to pool_size); 'same' padding never wins."""
    return _pool("max_pool2d", inputs, pool_size, strides, padding, data_format, "max_pool")


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Average pooling; with 'same', each window averages only its non-padded inputs."""
    return _pool("avg_pool2d", inputs, pool_size, strides, padding, data_format, "average_pool")


__all__ = ["conv", "depthwise_conv", "separable_conv", "conv_transpose", "max_pool",
           "average_pool"]
