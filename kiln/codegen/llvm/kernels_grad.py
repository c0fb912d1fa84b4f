"""Kernels for the ops backward passes need (kiln/ir/ops/grad.py): scatter_add,
conv2d_backprop_kernel, max_pool2d_grad and avg_pool2d_grad.

The direct kernels here zero their output, then accumulate into it. Loop nests keep a
contiguous channel (or row) loop innermost, as the forward kernels in kernels_nn.py
do; window positions in the padding are skipped by bounds checks, never read. The
hot ones of a CNN's training step have faster forms elsewhere: conv2d_backprop_kernel
(f32, one group) as a register-blocked GEMM in kernels_convgrad.py, max_pool2d_grad
vectorized over channels in kernels_pool.py.
"""
from __future__ import annotations

from ...ir.opdef import normalize_axis
from ...ir.types import DType
from .emit import I64, LLTYPE, const
from .kernels import kernel, kernel_context
from .kernels_nn import _lin, _mac, grouped_taps, window_taps
from . import kernels_convgrad as convgrad
from . import kernels_dwconv, kernels_pool


def _zero(kc, ptr, t):
    with kc.loop(kc.numel(t.shape), name="zero") as i:
        kc.store(const(t.dtype, 0), ptr, i, t.dtype)


def _add_to(kc, dt, ptr, i, v):
    kc.store(kc.b.fadd(kc.load(ptr, i, dt), v), ptr, i, dt)


@kernel("scatter_add")
def emit_scatter_add(module, name, node, symbols):
    """For every outer index o and index position t, add the slice updates[o, t, :] to
    out[o, idx[t], :]; an out-of-range index (< 0 or >= the axis size) is skipped."""
    kc = kernel_context(module, name, node, symbols)
    b = kc.b
    out_t, i_t = node.outputs[0].type, node.inputs[1].type
    dt = out_t.dtype
    ax = normalize_axis("scatter_add", node.attrs["axis"], out_t.rank)
    out_ptr, u_ptr, i_ptr = kc.args
    outer, size = kc.numel(out_t.shape[:ax]), kc.dim(out_t.shape[ax])
    inner, count = kc.numel(out_t.shape[ax + 1:]), kc.numel(i_t.shape)
    _zero(kc, out_ptr, out_t)
    with kc.loop(outer, name="o") as o:
        with kc.loop(count, name="t") as t:
            idx = kc.load(i_ptr, t, i_t.dtype)
            if i_t.dtype is not DType.i64:
                idx = b.sext(idx, I64)
            with b.if_then(b.icmp_unsigned("<", idx, size)):
                dst = b.mul(b.add(b.mul(o, size), idx), inner)
                src = b.mul(b.add(b.mul(o, count), t), inner)
                with kc.loop(inner, name="j") as j:
                    _add_to(kc, dt, out_ptr, b.add(dst, j), kc.load(u_ptr, b.add(src, j), dt))
    return kc.finish()


@kernel("conv2d_backprop_kernel")
def emit_conv2d_backprop_kernel(module, name, node, symbols):
    """For each output pixel and kernel tap (i, j) whose input pixel is inside the
    image, for each input channel c of each group: dw[i, j, c, group's outputs] +=
    x[pixel, c] * dy[pixel's outputs] (contiguous along the outputs). f32 with one group
    runs as a register-blocked GEMM instead (kernels_convgrad.py), a depthwise one on
    channel vectors (kernels_dwconv.py). Either way the kernel
    takes the node's scratch (SCRATCH) after its buffers."""
    if convgrad.eligible(node):
        return convgrad.emit_backprop_kernel_gemm(module, name, node, symbols)
    kc = convgrad.context(module, name, node, symbols)
    if kernels_dwconv.backprop_kernel_ok(node):     # depthwise: channel vectors, threaded
        kernels_dwconv.emit_backprop_kernel(kc, node)
        return kc.finish()
    b = kc.b
    x_t, dy_t, w_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    dt = x_t.dtype
    w_ptr, x_ptr, dy_ptr, _ = kc.args
    _, Ho, Wo, O = dy_t.shape
    kh, kw, cg, _ = w_t.shape
    groups = node.attrs["groups"]
    _zero(kc, w_ptr, w_t)

    def tap(dbase, xbase, i, j):
        wbase = b.mul(_lin(b, i, j, kw), I64(cg * O))
        grouped_taps(kc, dt, xbase, wbase, cg, groups, O, x_ptr,
                     lambda drow, o, xv, wi: _mac(kc, dt, w_ptr, wi, xv, dy_ptr,
                                                  b.add(b.add(dbase, drow), o)))

    window_taps(kc, node, x_t, (Ho, Wo), (kh, kw), O, None, tap)
    return kc.finish()


@kernel("max_pool2d_grad")
def emit_max_pool2d_grad(module, name, node, symbols):
    """Per output pixel and channel vector: the window's first maximum (a later element
    wins only if greater, or if it is the first NaN) gets dy, the rest of the window 0
    (kernels_pool.py)."""
    kc = kernel_context(module, name, node, symbols)
    kernels_pool.emit_max_pool2d_grad(kc, node)
    return kc.finish()


@kernel("avg_pool2d_grad")
def emit_avg_pool2d_grad(module, name, node, symbols):
    """Per output pixel: dy / (number of covered input elements) added to each covered
    input element, channels innermost."""
    kc = kernel_context(module, name, node, symbols)
    b = kc.b
    dx_t = node.outputs[0].type
    dt = dx_t.dtype
    dx_ptr, dy_ptr = kc.args
    _, H, W, C = dx_t.shape
    _zero(kc, dx_ptr, dx_t)

    def body(n, obase, ys, xs):
        count = b.mul(b.sub(ys[1], ys[0]), b.sub(xs[1], xs[0]))
        inv = b.fdiv(const(dt, 1), b.sitofp(count, LLTYPE[dt]))
        with kc.loop(ys[1], start=ys[0], name="y") as y:
            with kc.loop(xs[1], start=xs[0], name="x") as x:
                xbase = b.mul(_lin(b, n, y, H, x, W), I64(C))
                with kc.loop(I64(C), name="c") as c:
                    share = b.fmul(kc.load(dy_ptr, b.add(obase, c), dt), inv)
                    _add_to(kc, dt, dx_ptr, b.add(xbase, c), share)

    kernels_pool._window_walk(kc, node, dx_t.shape, node.inputs[-1].type.shape[1:3], I64(0),
                              kc.dim(dx_t.shape[0]),
                              lambda n, obase, y0, x0, ys, xs: body(n, obase, ys, xs))
    return kc.finish()
