"""Direct (loop-nest) kernels for conv2d (NHWC); conv2d_transpose and 2D pooling
dispatch to kernels_convt.py (gather form) and kernels_pool.py (channel vectors).

Correct first: every loop nest keeps a contiguous channel loop innermost so LLVM
vectorizes it; window positions that fall in the padding are skipped by bounds
checks on the row and column (so no padded copy of the input is made). Packed,
register-blocked microkernels replace these in [cpu-speed].
"""
from __future__ import annotations

from .emit import I64, const
from .kernels import kernel, kernel_context
from . import kernels_convt, kernels_pool, vmath
from .kernels_dwconv import depthwise_ok, depthwise_parallel, depthwise_rows


def _in_range(b, v, size: int):
    """0 <= v < size, for a signed i64 v (one unsigned compare)."""
    return b.icmp_unsigned("<", v, I64(size))


def _smax(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _smin(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _lin(b, *terms):
    """Row-major linear index: terms (i0, i1, d1, i2, d2, ...) -> ((i0*d1 + i1)*d2 + i2)..."""
    acc = terms[0]
    for i in range(1, len(terms), 2):
        acc = b.add(b.mul(acc, I64(terms[i + 1])), terms[i])
    return acc


@kernel("conv2d")
def emit_conv2d(module, name, node, symbols):
    """For each output pixel: zero its O outputs, then for each kernel tap (i, j) whose
    input pixel is inside the image, for each input channel c of each group, add
    x[pixel, c] * w[i, j, c, group's outputs] to the group's outputs (contiguous).
    Depthwise convs take kernels_dwconv.py's kernel; output rows are split across the
    pool."""
    kc = kernel_context(module, name, node, symbols)
    x_t, w_t, out_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    if depthwise_ok(node):
        depthwise_parallel(kc, node, lambda tc, lo, hi: depthwise_rows(tc, node, *tc.args, lo, hi))
        return kc.finish()
    kh, kw, cg, O = w_t.shape
    rows = kc.b.mul(kc.dim(x_t.shape[0]), I64(out_t.shape[1]))
    kc.parallel(rows, lambda tc, lo, hi: _direct_rows(tc, node, lo, hi),
                work=kc.b.mul(rows, I64(out_t.shape[2] * kh * kw * cg * O)), min_work=1 << 16)
    return kc.finish()


def _direct_rows(kc, node, lo, hi):
    b = kc.b
    x_t, w_t, out_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    dt = x_t.dtype
    out_ptr, x_ptr, w_ptr = kc.args
    kh, kw, cg, O = w_t.shape
    groups = node.attrs["groups"]
    og = O // groups

    def zero(obase):
        with kc.loop(I64(O), name="z") as o:
            kc.store(const(dt, 0), out_ptr, b.add(obase, o), dt)

    def tap(obase, xbase, i, j):
        wbase = b.mul(_lin(b, i, j, kw), I64(cg * O))
        if cg == 1:
            # depthwise-like: one input channel per group, so walk all O outputs at
            # once; output o reads channel o // og
            with kc.loop(I64(O), name="o") as o:
                c = o if og == 1 else b.udiv(o, I64(og))
                _mac(kc, dt, out_ptr, b.add(obase, o), kc.load(x_ptr, b.add(xbase, c), dt),
                     w_ptr, b.add(wbase, o))
        else:
            grouped_taps(kc, dt, xbase, wbase, cg, groups, O, x_ptr,
                         lambda orow, o, xv, wi: _mac(kc, dt, out_ptr, b.add(b.add(obase, orow), o),
                                                      xv, w_ptr, wi))

    window_taps(kc, node, x_t, out_t.shape[1:3], (kh, kw), O, zero, tap, rows=(lo, hi))


def window_taps(kc, node, x_t, out_hw, kernel_hw, O, pixel, tap, rows=None):
    """The walk of a convolution's windows: for each output pixel (n, oy, ox) call
    ``pixel(obase)`` (obase: the offset of its O outputs), then ``tap(obase, xbase, i, j)``
    for each kernel tap (i, j) whose input pixel is inside the image (xbase: the
    offset of that pixel's channels). ``rows``: only output rows (n, oy) in [lo, hi) of
    the flattened N*Ho (default: all)."""
    b = kc.b
    _, H, W, C = x_t.shape
    Ho, Wo = out_hw
    kh, kw = kernel_hw
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    pt, _, pl, _ = node.attrs["pads"]
    lo, hi = rows if rows is not None else (I64(0), b.mul(kc.dim(x_t.shape[0]), I64(Ho)))
    with kc.loop(hi, start=lo, name="r") as r:
        n, oy = b.sdiv(r, I64(Ho)), b.srem(r, I64(Ho))
        with kc.loop(I64(Wo), name="ox") as ox:
            obase = b.mul(_lin(b, r, ox, Wo), I64(O))
            if pixel is not None:
                pixel(obase)
            with kc.loop(I64(kh), name="i") as i:
                iy = b.add(b.mul(oy, I64(sh)), b.sub(b.mul(i, I64(dh)), I64(pt)))
                with b.if_then(_in_range(b, iy, H)):
                    with kc.loop(I64(kw), name="j") as j:
                        ix = b.add(b.mul(ox, I64(sw)), b.sub(b.mul(j, I64(dw)), I64(pl)))
                        with b.if_then(_in_range(b, ix, W)):
                            tap(obase, b.mul(_lin(b, n, iy, H, ix, W), I64(C)), i, j)


def grouped_taps(kc, dt, xbase, wbase, cg, groups, O, x_ptr, mac):
    """For each group g and input channel c of one tap: ``mac(orow, o, x[xbase + g*cg + c],
    w offset of (c, g*og + o))`` for every output o of the group (orow = g*og)."""
    b = kc.b
    og = O // groups
    with kc.loop(I64(groups), name="g") as g:
        with kc.loop(I64(cg), name="c") as c:
            xv = kc.load(x_ptr, b.add(xbase, b.add(b.mul(g, I64(cg)), c)), dt)
            wrow = b.add(wbase, b.add(b.mul(c, I64(O)), b.mul(g, I64(og))))
            orow = b.mul(g, I64(og))
            with kc.loop(I64(og), name="o") as o:
                mac(orow, o, xv, b.add(wrow, o))


def _mac(kc, dt, out_ptr, oi, xv, w_ptr, wi):
    """out[oi] += xv * w[wi]"""
    kc.store(vmath.fma(kc.b, kc.module, xv, kc.load(w_ptr, wi, dt), kc.load(out_ptr, oi, dt)),
             out_ptr, oi, dt)


@kernel("conv2d_transpose")
def emit_conv2d_transpose(module, name, node, symbols):
    """The gather form of kernels_convt.py (register-blocked across images). Its type
    needs static spatial sizes, so no other form is needed."""
    kc = kernel_context(module, name, node, symbols)
    kernels_convt.emit_conv2d_transpose_gather(kc, node)
    return kc.finish()


@kernel("pool2d")
def emit_pool2d(module, name, node, symbols):
    """max_pool2d / avg_pool2d: per output pixel, the window clipped to the image, one
    channel vector at a time (kernels_pool.py); images split across the thread pool."""
    kc = kernel_context(module, name, node, symbols)
    kernels_pool.emit_pool2d(kc, node)
    return kc.finish()
