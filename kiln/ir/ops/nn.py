"""Convolution and pooling over NHWC images (Keras' channels_last layout).

Layers compute Keras' padding arithmetic ('valid', 'same', causal, ...) and pass
explicit pads; Conv1D, DepthwiseConv2D and SeparableConv2D are conv2d after a
reshape (depthwise: ``groups = C`` with the kernel reshaped to [kh,kw,1,C*m]), and
1D pooling is 2D pooling over a height of 1. Along each spatial axis, with input
size ``H``, window ``k``, dilation ``d``, stride ``s`` and pads ``lo``/``hi``:

    out = (H + lo + hi - d*(k-1) - 1) // s + 1

Only the batch dimension may be symbolic.
"""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, register, same_dtype
from ..types import TensorType, is_symbol
from .vjp_util import block_diagonal, spread, zeros


def _image(op: str, x: TensorType):
    if x.rank != 4:
        raise OpTypeError(f"{op}: input must be NHWC (rank 4), got {x}")
    if not x.dtype.is_float:
        raise OpTypeError(f"{op}: expects floating-point operands, got {x}")
    if any(is_symbol(d) for d in x.shape[1:]):
        raise OpTypeError(f"{op}: input height, width and channels must be static, got {x}")


def _kernel(op: str, w: TensorType, layout: str):
    if w.rank != 4 or not w.is_static:
        raise OpTypeError(f"{op}: kernel must be {layout} (rank 4, static), got {w}")


def _pairs(op: str, name: str, v, n: int, lo: int):
    if len(v) != n or any(e < lo for e in v):
        raise OpTypeError(f"{op}: attribute {name} must be {n} integers >= {lo}, got {list(v)}")


def out_size(op: str, size: int, k: int, d: int, s: int, lo: int, hi: int, x: TensorType) -> int:
    o = (size + lo + hi - d * (k - 1) - 1) // s + 1
    if o <= 0:
        raise OpTypeError(f"{op}: the window (size {k}, dilation {d}) does not fit the padded "
                          f"input ({size} + {lo} + {hi}) of {x}")
    return o


def _window_rows(x, pads, k, d, s, out, axis, fill):
    """Pad ``x`` (NHWC) by ``pads`` (lo, hi) along ``axis`` with ``fill`` and return, for
    each window offset i in range(k), the strided rows x[i*d + s*o] for o in range(out)."""
    width = [(0, 0)] * 4
    width[axis] = pads
    xp = np.pad(x, width, constant_values=fill)
    rows = []
    for i in range(k):
        idx = [slice(None)] * 4
        idx[axis] = slice(i * d, i * d + s * (out - 1) + 1, s)
        rows.append(xp[tuple(idx)])
    return rows


@register
class Conv2D(OpDef):
    """Cross-correlation, NHWC input f32[N,H,W,C], HWIO kernel f32[kh,kw,C/groups,O]
    (Keras' layout), output f32[N,Ho,Wo,O]:

        out[n,y,x,o] = sum_{i,j,c} xpad[n, y*sh + i*dh, x*sw + j*dw, g*C/G + c] * w[i,j,c,o]

    with ``g = o // (O/G)`` the group of output channel o, and ``xpad`` the input
    zero-padded by ``pads`` = (top, bottom, left, right). No bias (a layer adds it)."""
    name = "conv2d"
    kind = Kind.OUT_FUSABLE
    family = "conv2d"
    num_inputs = 2
    attrs = (Attr("strides", AttrKind.INTS, (1, 1)), Attr("dilations", AttrKind.INTS, (1, 1)),
             Attr("pads", AttrKind.INTS, (0, 0, 0, 0)), Attr("groups", AttrKind.INT, 1))

    def infer(self, x: TensorType, w: TensorType, *, strides, dilations, pads, groups):
        dt = same_dtype(self.name, x, w)
        _image(self.name, x)
        _kernel(self.name, w, "[kh,kw,C/groups,O]")
        _pairs(self.name, "strides", strides, 2, 1)
        _pairs(self.name, "dilations", dilations, 2, 1)
        _pairs(self.name, "pads", pads, 4, 0)
        n, h, wd, c = x.shape
        kh, kw, cg, o = w.shape
        if groups < 1 or c % groups or o % groups:
            raise OpTypeError(f"conv2d: groups={groups} must divide the input channels ({c}) and "
                              f"the output channels ({o})")
        if cg * groups != c or kh < 1 or kw < 1:
            raise OpTypeError(f"conv2d: kernel {w} (HWIO) expects {cg} input channel(s) per group; "
                              f"input {x} has {c} channel(s) in {groups} group(s)")
        ho = out_size(self.name, h, kh, dilations[0], strides[0], pads[0], pads[1], x)
        wo = out_size(self.name, wd, kw, dilations[1], strides[1], pads[2], pads[3], x)
        return TensorType((n, ho, wo, o), dt)

    def reference(self, x, w, *, strides, dilations, pads, groups):
        kh, kw, cg, o = w.shape
        ho, wo = self._out_hw(x, w, strides, dilations, pads)
        acc = np.zeros(x.shape[:1] + (ho, wo, groups, o // groups), np.float64)
        wg = w.astype(np.float64).reshape(kh, kw, cg, groups, o // groups)
        for i, rows in enumerate(_window_rows(x, pads[:2], kh, dilations[0], strides[0], ho, 1, 0)):
            for j, patch in enumerate(_window_rows(rows, pads[2:], kw, dilations[1], strides[1], wo, 2, 0)):
                p = patch.astype(np.float64).reshape(patch.shape[:3] + (groups, cg))
                acc += np.einsum("nhwgc,cgo->nhwgo", p, wg[i, j])
        return acc.reshape(acc.shape[:3] + (o,)).astype(x.dtype)

    @staticmethod
    def _out_hw(x, w, strides, dilations, pads):
        return tuple((x.shape[1 + a] + pads[2 * a] + pads[2 * a + 1] - dilations[a] * (w.shape[a] - 1)
                      - 1) // strides[a] + 1 for a in range(2))

    def vjp(self, g, ins, outs, cts, *, strides, dilations, pads, groups):
        x, w = ins
        kw = dict(strides=strides, dilations=dilations, pads=pads)
        return [conv2d_input_grad(g, cts[0], w, x.type.shape[1:3], groups=groups, **kw),
                g.op("conv2d_backprop_kernel", x, cts[0], kernel=w.type.shape[:2], groups=groups, **kw)]


def conv2d_input_grad(g, ct, w, hw, *, strides, dilations, pads, groups):
    """d conv2d / d x: the transposed convolution of the cotangent with the same kernel
    (HWIO [kh,kw,C,O] read as conv2d_transpose's [kh,kw,out=C,in=O]); output_padding
    restores the input rows and columns the strided windows never reached. A grouped
    kernel is made dense (block diagonal) first, as conv2d_transpose has no groups --
    except a depthwise one (see ``depthwise_input_grad``)."""
    if groups > 1 and w.type.shape[2] == 1 and groups == w.type.shape[3]:
        dx = depthwise_input_grad(g, ct, w, hw, strides=strides, dilations=dilations, pads=pads)
        if dx is not None:
            return dx
    if groups > 1:
        w = block_diagonal(g, w, groups)
    ho_wo = ct.type.shape[1:3]
    extra = tuple(hw[a] + pads[2 * a] + pads[2 * a + 1]
                  - ((ho_wo[a] - 1) * strides[a] + dilations[a] * (w.type.shape[a] - 1) + 1)
                  for a in range(2))
    return g.op("conv2d_transpose", ct, w, strides=strides, dilations=dilations, pads=pads,
                output_padding=extra)


def depthwise_input_grad(g, ct, w, hw, *, strides, dilations, pads):
    """d x of a depthwise conv2d (one input channel per group, as many groups as
    channels): itself a depthwise conv2d -- of the cotangent spread by the strides (s-1
    zeros after each element) with the window flipped, at stride 1, padded so each input
    position sees the outputs whose windows covered it:

        dx[y] = sum_i spread(dy)[y + pad_top - i*d] * w[i] = conv(spread(dy), flip(w))[y]
        with padding top' = (k-1)*d - pad_top, bottom' from the input size

    The dense route (block-diagonal kernel, conv2d_transpose) does C times the work.
    None when a pad is wider than the window (top' < 0: the dense route then)."""
    kh, kw = w.type.shape[:2]
    new_pads = []
    for a, k in enumerate((kh, kw)):
        keff = (k - 1) * dilations[a]
        lo, hi = pads[2 * a], pads[2 * a + 1]
        if lo > keff or hi > keff:
            return None
        s, n = strides[a], ct.type.shape[1 + a]
        if s > 1 and n > 1:                 # s-1 zeros after each element
            ct = spread(g, ct, 1 + a, s)
            n = n * s
        top = keff - lo
        bottom = hw[a] - n - top + keff
        if bottom < 0:                      # only trailing zeros of the spread are cut
            n += bottom
            ct = g.op("slice", ct, axes=(1 + a,), begin=(0,), end=(n,))
            bottom = 0
        new_pads += [top, bottom]
    flipped = g.op("slice", w, axes=(0, 1), begin=(-1, -1), end=(-(kh + 1), -(kw + 1)), steps=(-1, -1))
    return g.op("conv2d", ct, flipped, strides=(1, 1), dilations=dilations, pads=tuple(new_pads),
                groups=w.type.shape[3])


@register
class Conv2DTranspose(OpDef):
    """Transposed convolution (the input-gradient of conv2d), as Keras' Conv2DTranspose:
    input f32[N,H,W,C], kernel f32[kh,kw,O,C] (Keras' layout: out and in swapped).
    Every input pixel scatters into a full-size output

        full[n, y*sh + i*dh, x*sw + j*dw, o] += x[n,y,x,c] * w[i,j,o,c]

    of height (H-1)*sh + dh*(kh-1) + 1 (likewise width); the result is rows
    ``top .. full_h - bottom + output_padding[0]`` of it (columns likewise), rows past
    the end of ``full`` being zero. ``pads`` = (top, bottom, left, right):

        Ho = (H-1)*sh + dh*(kh-1) + 1 - top - bottom + output_padding[0]

    Keras 'valid' is pads 0 with output_padding max(s - k_eff, 0) when none is given;
    'same' crops the total max(k_eff - s, 0) as conv2d 'same' pads (top = total // 2)."""
    name = "conv2d_transpose"
    kind = Kind.OUT_FUSABLE
    family = "conv2d_transpose"
    num_inputs = 2
    attrs = (Attr("strides", AttrKind.INTS, (1, 1)), Attr("dilations", AttrKind.INTS, (1, 1)),
             Attr("pads", AttrKind.INTS, (0, 0, 0, 0)), Attr("output_padding", AttrKind.INTS, (0, 0)))

    def infer(self, x: TensorType, w: TensorType, *, strides, dilations, pads, output_padding):
        dt = same_dtype(self.name, x, w)
        _image(self.name, x)
        _kernel(self.name, w, "[kh,kw,O,C]")
        for nm, v, n in (("strides", strides, 2), ("dilations", dilations, 2), ("pads", pads, 4),
                         ("output_padding", output_padding, 2)):
            _pairs(self.name, nm, v, n, 0 if nm in ("pads", "output_padding") else 1)
        n, h, wd, c = x.shape
        kh, kw, o, ci = w.shape
        if ci != c or kh < 1 or kw < 1:
            raise OpTypeError(f"conv2d_transpose: kernel {w} (kh,kw,out,in) expects {ci} input "
                              f"channel(s); input {x} has {c}")
        hw = self.out_hw((h, wd), (kh, kw), strides, dilations, pads, output_padding)
        if min(hw) <= 0:
            raise OpTypeError(f"conv2d_transpose: pads {list(pads)} crop away the whole output "
                              f"of {x} with kernel {w}")
        return TensorType((n, *hw, o), dt)

    @staticmethod
    def out_hw(hw, k, strides, dilations, pads, output_padding):
        return tuple((hw[a] - 1) * strides[a] + dilations[a] * (k[a] - 1) + 1 - pads[2 * a]
                     - pads[2 * a + 1] + output_padding[a] for a in range(2))

    def reference(self, x, w, *, strides, dilations, pads, output_padding):
        n, h, wd, c = x.shape
        kh, kw, o, _ = w.shape
        ho, wo = self.out_hw((h, wd), (kh, kw), strides, dilations, pads, output_padding)
        full_h = max((h - 1) * strides[0] + dilations[0] * (kh - 1) + 1, pads[0] + ho)
        full_w = max((wd - 1) * strides[1] + dilations[1] * (kw - 1) + 1, pads[2] + wo)
        full = np.zeros((n, full_h, full_w, o), np.float64)
        xf = x.astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                y0, x0 = i * dilations[0], j * dilations[1]
                full[:, y0:y0 + strides[0] * (h - 1) + 1:strides[0],
                     x0:x0 + strides[1] * (wd - 1) + 1:strides[1], :] += xf @ w[i, j].astype(np.float64).T
        return full[:, pads[0]:pads[0] + ho, pads[2]:pads[2] + wo, :].astype(x.dtype)

    def vjp(self, g, ins, outs, cts, *, strides, dilations, pads, output_padding):
        """conv2d_transpose is the adjoint of a conv2d from its uncropped output ``full``
        to its input: the cotangent, placed back into ``full`` (zero-padded by the crop;
        rows past the end of ``full`` -- output_padding -- are cut), is convolved with
        the kernel for the input, and correlated with the input for the kernel."""
        x, w = ins
        ct = cts[0]
        full = [(x.type.shape[1 + a] - 1) * strides[a] + dilations[a] * (w.type.shape[a] - 1) + 1
                for a in range(2)]
        keep = [min(ct.type.shape[1 + a], full[a] - pads[2 * a]) for a in range(2)]
        if min(keep) <= 0:       # the whole output lies in the padding: no gradient
            return [zeros(g, x.type), zeros(g, w.type)]
        if keep != list(ct.type.shape[1:3]):
            ct = g.op("slice", ct, axes=(1, 2), begin=(0, 0), end=tuple(keep))
        cpads = (pads[0], full[0] - pads[0] - keep[0], pads[2], full[1] - pads[2] - keep[1])
        kw = dict(strides=strides, dilations=dilations, pads=cpads)
        return [g.op("conv2d", ct, w, **kw),
                g.op("conv2d_backprop_kernel", ct, x, kernel=w.type.shape[:2], **kw)]


class Pool2D(OpDef):
    kind = Kind.OUT_FUSABLE
    family = "pool2d"
    num_inputs = 1
    attrs = (Attr("window", AttrKind.INTS), Attr("strides", AttrKind.INTS),
             Attr("pads", AttrKind.INTS, (0, 0, 0, 0)))

    def infer(self, x: TensorType, *, window, strides, pads):
        _image(self.name, x)
        _pairs(self.name, "window", window, 2, 1)
        _pairs(self.name, "strides", strides, 2, 1)
        _pairs(self.name, "pads", pads, 4, 0)
        if max(pads[:2]) >= window[0] or max(pads[2:]) >= window[1]:
            raise OpTypeError(f"{self.name}: pads {list(pads)} must be smaller than the window "
                              f"{list(window)} (a window must hold at least one input element)")
        n, h, wd, c = x.shape
        return TensorType((n, out_size(self.name, h, window[0], 1, strides[0], pads[0], pads[1], x),
                           out_size(self.name, wd, window[1], 1, strides[1], pads[2], pads[3], x),
                           c), x.dtype)

    def windows(self, x, window, strides, pads, fill):
        """Every (i, j) window offset's patch, NHWC of the output's size."""
        ho, wo = ((x.shape[1 + a] + pads[2 * a] + pads[2 * a + 1] - window[a]) // strides[a] + 1
                  for a in range(2))
        for rows in _window_rows(x, pads[:2], window[0], 1, strides[0], ho, 1, fill):
            yield from _window_rows(rows, pads[2:], window[1], 1, strides[1], wo, 2, fill)


@register
class MaxPool2D(Pool2D):
    """Max over each window (``window`` (kh,kw), ``strides``, ``pads`` (top,bottom,left,
    right)); padded positions never win (as Keras 'same'); NaN propagates."""
    name = "max_pool2d"

    def reference(self, x, *, window, strides, pads):
        out = None
        for p in self.windows(x, window, strides, pads, -np.inf):
            out = p.copy() if out is None else np.maximum(out, p)
        return out

    def vjp(self, g, ins, outs, cts, *, window, strides, pads):
        # to the first maximum of each window (max_pool2d_grad documents ties)
        return [g.op("max_pool2d_grad", ins[0], cts[0], window=window, strides=strides, pads=pads)]


@register
class AvgPool2D(Pool2D):
    """Mean over each window's non-padded elements (as Keras/TF 'same': the divisor is
    the number of input elements the window covers, not kh*kw)."""
    name = "avg_pool2d"

    def reference(self, x, *, window, strides, pads):
        total = count = 0
        ones = np.ones((1,) + x.shape[1:3] + (1,))
        for p, q in zip(self.windows(x.astype(np.float64), window, strides, pads, 0),
                        self.windows(ones, window, strides, pads, 0)):
            total = total + p
            count = count + q
        return (total / count).astype(x.dtype)

    def vjp(self, g, ins, outs, cts, *, window, strides, pads):
        return [g.op("avg_pool2d_grad", cts[0], window=window, strides=strides, pads=pads,
                     size=ins[0].type.shape[1:3])]
