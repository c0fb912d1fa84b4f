"""Ops that backward passes need and no forward op expresses: the gradients of
gather (scatter_add), of conv2d's kernel, and of the two poolings.

Each is an ordinary op -- type inference, a numpy reference the interpreter runs, a
kernel family codegen looks up (kiln/codegen/llvm/kernels_grad.py), and a ``vjp`` of
its own where second-order gradients are needed (all but max_pool2d_grad).
"""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, get_op, normalize_axis, register, same_dtype
from ..types import DType, TensorType
from .nn import _image, _pairs, _window_rows, conv2d_input_grad, out_size

_CONV_ATTRS = (Attr("kernel", AttrKind.INTS), Attr("strides", AttrKind.INTS, (1, 1)),
               Attr("dilations", AttrKind.INTS, (1, 1)), Attr("pads", AttrKind.INTS, (0, 0, 0, 0)),
               Attr("groups", AttrKind.INT, 1))
_POOL_ATTRS = (Attr("window", AttrKind.INTS), Attr("strides", AttrKind.INTS),
               Attr("pads", AttrKind.INTS, (0, 0, 0, 0)))


@register
class ScatterAdd(OpDef):
    """The adjoint of gather: zeros of ``shape``, then for every index position t

        out[a..., indices[t], b...] += updates[a..., t..., b...]

    (repeated indices accumulate), where ``updates`` has gather's result shape
    ``shape[:axis] + indices.shape + shape[axis+1:]``. Out-of-range indices: the
    reference raises ValueError (as gather's); compiled code skips them."""
    name = "scatter_add"
    kind = Kind.OPAQUE
    family = "scatter_add"
    num_inputs = 2
    attrs = (Attr("axis", AttrKind.INT), Attr("shape", AttrKind.SHAPE))

    def infer(self, updates: TensorType, indices: TensorType, *, axis, shape):
        if indices.dtype not in (DType.i32, DType.i64):
            raise OpTypeError(f"scatter_add: indices must be i32 or i64, got {indices}")
        if -1 in shape or not shape:
            raise OpTypeError(f"scatter_add: shape must be explicit and of rank >= 1, got {list(shape)}")
        ax = normalize_axis(self.name, axis, len(shape))
        want = tuple(shape[:ax]) + indices.shape + tuple(shape[ax + 1:])
        if updates.shape != want:
            raise OpTypeError(f"scatter_add: updates {updates} must have shape [{','.join(map(str, want))}] "
                              f"(gather's result for indices {indices} into [{','.join(map(str, shape))}])")
        return TensorType(tuple(shape), updates.dtype)

    def reference(self, updates, indices, *, axis, shape):
        ax = axis % len(shape)
        bad = (indices < 0) | (indices >= shape[ax])
        if bad.any():
            raise ValueError(f"scatter_add: index {int(indices[bad].flat[0])} is out of range for axis "
                             f"{ax} of size {shape[ax]}")
        out = np.zeros(shape, updates.dtype)
        np.add.at(out, (slice(None),) * ax + (indices,), updates)
        return out

    def vjp(self, g, ins, outs, cts, *, axis, shape):
        return [g.op("gather", cts[0], ins[1], axis=axis), None]


@register
class Conv2DBackpropKernel(OpDef):
    """The gradient of conv2d's kernel: with conv2d's attributes (and ``kernel`` =
    (kh, kw)), input x f32[N,H,W,C] and output cotangent dy f32[N,Ho,Wo,O],

        dw[i,j,c,o] = sum_{n,y,x} xpad[n, y*sh + i*dh, x*sw + j*dw, g*C/G + c] * dy[n,y,x,o]

    with g = o // (O/G); result f32[kh,kw,C/G,O] (HWIO). dy must have the shape
    conv2d gives for x and that kernel."""
    name = "conv2d_backprop_kernel"
    kind = Kind.OPAQUE
    family = "conv2d_backprop_kernel"
    num_inputs = 2
    attrs = _CONV_ATTRS

    def infer(self, x: TensorType, dy: TensorType, *, kernel, strides, dilations, pads, groups):
        dt = same_dtype(self.name, x, dy)
        _image(self.name, x)
        _image(self.name, dy)
        for nm, v, n, lo in (("kernel", kernel, 2, 1), ("strides", strides, 2, 1),
                             ("dilations", dilations, 2, 1), ("pads", pads, 4, 0)):
            _pairs(self.name, nm, v, n, lo)
        c, o = x.shape[3], dy.shape[3]
        if groups < 1 or c % groups or o % groups:
            raise OpTypeError(f"{self.name}: groups={groups} must divide the input channels ({c}) "
                              f"and the output channels ({o})")
        hw = tuple(out_size(self.name, x.shape[1 + a], kernel[a], dilations[a], strides[a],
                            pads[2 * a], pads[2 * a + 1], x) for a in range(2))
        if dy.shape[:3] != (x.shape[0],) + hw:
            raise OpTypeError(f"{self.name}: dy {dy} does not match conv2d's output "
                              f"[{x.shape[0]},{hw[0]},{hw[1]},{o}] for x {x}")
        return TensorType((kernel[0], kernel[1], c // groups, o), dt)

    def reference(self, x, dy, *, kernel, strides, dilations, pads, groups):
        kh, kw = kernel
        n, ho, wo, o = dy.shape
        cg = x.shape[3] // groups
        dyg = dy.astype(np.float64).reshape(n, ho, wo, groups, o // groups)
        dw = np.zeros((kh, kw, cg, groups, o // groups), np.float64)
        for i, rows in enumerate(_window_rows(x, pads[:2], kh, dilations[0], strides[0], ho, 1, 0)):
            for j, patch in enumerate(_window_rows(rows, pads[2:], kw, dilations[1], strides[1], wo, 2, 0)):
                p = patch.astype(np.float64).reshape(n, ho, wo, groups, cg)
                dw[i, j] = np.einsum("nhwgc,nhwgo->cgo", p, dyg)
        return dw.reshape(kh, kw, cg, o).astype(x.dtype)

    def vjp(self, g, ins, outs, cts, *, kernel, strides, dilations, pads, groups):
        # bilinear in (x, dy): d x is conv2d's input gradient with the kernel cotangent
        # as kernel, d dy is conv2d of x with it
        x, dy = ins
        kw = dict(strides=strides, dilations=dilations, pads=pads, groups=groups)
        return [conv2d_input_grad(g, dy, cts[0], x.type.shape[1:3], **kw),
                g.op("conv2d", x, cts[0], **kw)]


@register
class MaxPool2DGrad(OpDef):
    """The gradient of max_pool2d (same attributes) for input x and output cotangent
    dy: each window's dy goes to ONE input element, the first (row-major in the window)
    that holds the window's maximum -- as TensorFlow's MaxPoolGrad -- or the first NaN
    when the window has one; padded positions never win. Overlapping windows add up."""
    name = "max_pool2d_grad"
    kind = Kind.OPAQUE
    family = "max_pool2d_grad"
    num_inputs = 2
    attrs = _POOL_ATTRS

    def infer(self, x: TensorType, dy: TensorType, *, window, strides, pads):
        same_dtype(self.name, x, dy)
        want = get_op("max_pool2d").infer(x, window=window, strides=strides, pads=pads)
        if dy != want:
            raise OpTypeError(f"{self.name}: dy {dy} does not match max_pool2d's output {want} for {x}")
        return x

    def reference(self, x, dy, *, window, strides, pads):
        pool = get_op("max_pool2d")
        valid = np.ones((1,) + x.shape[1:3] + (1,), bool)
        best = idx = None
        cands = zip(pool.windows(x, window, strides, pads, -np.inf),
                    pool.windows(valid, window, strides, pads, False))
        for k, (p, ok) in enumerate(cands):
            if best is None:
                best, idx = p.copy(), np.where(ok, 0, -1) + np.zeros(p.shape, np.int64)
                continue
            with np.errstate(invalid="ignore"):
                better = ok & ((idx < 0) | (p > best) | (np.isnan(p) & ~np.isnan(best)))
            best = np.where(better, p, best)
            idx = np.where(better, k, idx)
        n, h, w, c = x.shape
        ho, wo = dy.shape[1:3]
        (kh, kw), (sh, sw) = window, strides
        dxp = np.zeros((n, h + pads[0] + pads[1], w + pads[2] + pads[3], c), np.float64)
        for i in range(kh):
            for j in range(kw):
                dxp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += \
                    np.where(idx == i * kw + j, dy, 0)
        return dxp[:, pads[0]:pads[0] + h, pads[2]:pads[2] + w].astype(x.dtype)


@register
class AvgPool2DGrad(OpDef):
    """The gradient of avg_pool2d (same attributes) for an input of spatial ``size``
    (H, W): each window's dy, divided by the number of input elements it covers, is
    added to each of them. Result [N,H,W,C]."""
    name = "avg_pool2d_grad"
    kind = Kind.OPAQUE
    family = "avg_pool2d_grad"
    num_inputs = 1
    attrs = _POOL_ATTRS + (Attr("size", AttrKind.INTS),)

    def infer(self, dy: TensorType, *, window, strides, pads, size):
        _image(self.name, dy)
        _pairs(self.name, "size", size, 2, 1)
        x = TensorType((dy.shape[0], *size, dy.shape[3]), dy.dtype)
        want = get_op("avg_pool2d").infer(x, window=window, strides=strides, pads=pads)
        if dy != want:
            raise OpTypeError(f"{self.name}: dy {dy} does not match avg_pool2d's output {want} "
                              f"for an input {x}")
        return x

    def reference(self, dy, *, window, strides, pads, size):
        pool = get_op("avg_pool2d")
        ones = np.ones((1, *size, 1))
        count = sum(pool.windows(ones, window, strides, pads, 0))
        share = dy.astype(np.float64) / count
        n, ho, wo, c = dy.shape
        (kh, kw), (sh, sw) = window, strides
        dxp = np.zeros((n, size[0] + pads[0] + pads[1], size[1] + pads[2] + pads[3], c), np.float64)
        for i in range(kh):
            for j in range(kw):
                dxp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += share
        return dxp[:, pads[0]:pads[0] + size[0], pads[2]:pads[2] + size[1]].astype(dy.dtype)

    def vjp(self, g, ins, outs, cts, *, window, strides, pads, size):
        return [g.op("avg_pool2d", cts[0], window=window, strides=strides, pads=pads)]
