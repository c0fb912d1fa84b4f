"""Direct (loop-nest) kernels for conv2d, conv2d_transpose and 2D pooling, NHWC.

Correct first: every loop nest keeps a contiguous channel loop innermost so LLVM
vectorizes it; window positions that fall in the padding are skipped by bounds
checks on the row and column (so no padded copy of the input is made). Packed,
register-blocked microkernels replace these in [cpu-speed].
"""
from __future__ import annotations

import llvmlite.ir as ll

from .emit import I64, LLTYPE, const
from .kernels import kernel, kernel_context

_FLAGS = ["contract"]


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
    x[pixel, c] * w[i, j, c, group's outputs] to the group's outputs (contiguous)."""
    kc = kernel_context(module, name, node, symbols)
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

    window_taps(kc, node, x_t, out_t.shape[1:3], (kh, kw), O, zero, tap)
    return kc.finish()


def window_taps(kc, node, x_t, out_hw, kernel_hw, O, pixel, tap):
    """The walk of a convolution's windows: for each output pixel (n, oy, ox) call
    ``pixel(obase)`` (obase: the offset of its O outputs), then ``tap(obase, xbase, i, j)``
    for each kernel tap (i, j) whose input pixel is inside the image (xbase: the
    offset of that pixel's channels)."""
    b = kc.b
    _, H, W, C = x_t.shape
    Ho, Wo = out_hw
    kh, kw = kernel_hw
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    pt, _, pl, _ = node.attrs["pads"]
    with kc.loop(kc.dim(x_t.shape[0]), name="n") as n:
        with kc.loop(I64(Ho), name="oy") as oy:
            with kc.loop(I64(Wo), name="ox") as ox:
                obase = b.mul(_lin(b, n, oy, Ho, ox, Wo), I64(O))
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
    b = kc.b
    prod = b.fmul(xv, kc.load(w_ptr, wi, dt), flags=_FLAGS)
    kc.store(b.fadd(kc.load(out_ptr, oi, dt), prod, flags=_FLAGS), out_ptr, oi, dt)


@kernel("conv2d_transpose")
def emit_conv2d_transpose(module, name, node, symbols):
    """Scatter form: zero the output; for each input pixel and kernel tap (i, j) whose
    output pixel (y*sh + i*dh - top, x*sw + j*dw - left) is inside the output, add
    sum_c x[pixel, c] * w[i, j, o, c] to out[.., o] for every o (the sum over c runs
    along contiguous rows of x and of the (kh,kw,O,C) kernel)."""
    kc = kernel_context(module, name, node, symbols)
    b = kc.b
    x_t, w_t, out_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    dt = x_t.dtype
    out_ptr, x_ptr, w_ptr = kc.args
    _, H, W, C = x_t.shape
    kh, kw, O, _ = w_t.shape
    _, Ho, Wo, _ = out_t.shape
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    pt, _, pl, _ = node.attrs["pads"]
    N = kc.dim(x_t.shape[0])
    with kc.loop(b.mul(N, I64(Ho * Wo * O)), name="z") as z:
        kc.store(const(dt, 0), out_ptr, z, dt)
    with b.goto_entry_block():
        acc_slot = b.alloca(LLTYPE[dt])
    red = ["reassoc", "nsz", "contract"]
    with kc.loop(N, name="n") as n:
        with kc.loop(I64(H), name="y") as y:
            with kc.loop(I64(W), name="x") as x:
                xbase = b.mul(_lin(b, n, y, H, x, W), I64(C))
                with kc.loop(I64(kh), name="i") as i:
                    oy = b.add(b.mul(y, I64(sh)), b.sub(b.mul(i, I64(dh)), I64(pt)))
                    with b.if_then(_in_range(b, oy, Ho)):
                        with kc.loop(I64(kw), name="j") as j:
                            ox = b.add(b.mul(x, I64(sw)), b.sub(b.mul(j, I64(dw)), I64(pl)))
                            with b.if_then(_in_range(b, ox, Wo)):
                                obase = b.mul(_lin(b, n, oy, Ho, ox, Wo), I64(O))
                                wbase = b.mul(_lin(b, i, j, kw), I64(O * C))
                                with kc.loop(I64(O), name="o") as o:
                                    wrow = b.add(wbase, b.mul(o, I64(C)))
                                    b.store(const(dt, 0), acc_slot)
                                    with kc.loop(I64(C), name="c") as c:
                                        p = b.fmul(kc.load(x_ptr, b.add(xbase, c), dt),
                                                   kc.load(w_ptr, b.add(wrow, c), dt), flags=red)
                                        b.store(b.fadd(b.load(acc_slot), p, flags=red), acc_slot)
                                    oi = b.add(obase, o)
                                    kc.store(b.fadd(kc.load(out_ptr, oi, dt), b.load(acc_slot)), out_ptr, oi, dt)
    return kc.finish()


@kernel("pool2d")
def emit_pool2d(module, name, node, symbols):
    """For each output pixel: clip its window to the image, then take the max (or the
    sum, times 1/number of covered elements for the average) over the covered input
    pixels, channels innermost. Images are split across the thread pool."""
    kc = kernel_context(module, name, node, symbols)
    x_t, out_t = node.inputs[0].type, node.outputs[0].type
    dt = x_t.dtype
    t = LLTYPE[dt]
    _, H, W, C = x_t.shape
    _, Ho, Wo, _ = out_t.shape
    kh, kw = node.attrs["window"]
    sh, sw = node.attrs["strides"]
    pt, _, pl, _ = node.attrs["pads"]
    is_max = node.op.name == "max_pool2d"
    vmax = module.declare_intrinsic("llvm.maximum", [t], ll.FunctionType(t, [t, t]))

    def images(tc, lo, hi):
        b = tc.b
        out_ptr, x_ptr = tc.args
        with tc.loop(hi, start=lo, name="n") as n:
            with tc.loop(I64(Ho), name="oy") as oy:
                y0 = b.sub(b.mul(oy, I64(sh)), I64(pt))
                ylo, yhi = _smax(b, y0, I64(0)), _smin(b, b.add(y0, I64(kh)), I64(H))
                with tc.loop(I64(Wo), name="ox") as ox:
                    x0 = b.sub(b.mul(ox, I64(sw)), I64(pl))
                    xlo, xhi = _smax(b, x0, I64(0)), _smin(b, b.add(x0, I64(kw)), I64(W))
                    obase = b.mul(_lin(b, n, oy, Ho, ox, Wo), I64(C))
                    init = const(dt, float("-inf") if is_max else 0.0)
                    with tc.loop(I64(C), name="z") as c:
                        tc.store(init, out_ptr, b.add(obase, c), dt)
                    with tc.loop(yhi, start=ylo, name="y") as y:
                        with tc.loop(xhi, start=xlo, name="x") as x:
                            xbase = b.mul(_lin(b, n, y, H, x, W), I64(C))
                            with tc.loop(I64(C), name="c") as c:
                                oi = b.add(obase, c)
                                v, acc = tc.load(x_ptr, b.add(xbase, c), dt), tc.load(out_ptr, oi, dt)
                                r = b.call(vmax, [acc, v]) if is_max else b.fadd(acc, v)
                                tc.store(r, out_ptr, oi, dt)
                    if not is_max:
                        count = b.mul(b.sub(yhi, ylo), b.sub(xhi, xlo))
                        inv = b.fdiv(const(dt, 1), b.sitofp(count, t))
                        with tc.loop(I64(C), name="s") as c:
                            oi = b.add(obase, c)
                            tc.store(b.fmul(tc.load(out_ptr, oi, dt), inv), out_ptr, oi, dt)

    batch = kc.dim(x_t.shape[0])
    kc.parallel(batch, images, work=kc.b.mul(batch, I64(Ho * Wo * C * kh * kw)))
    return kc.finish()
