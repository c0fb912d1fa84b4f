"""2D pooling and max pooling's gradient, vectorized over channels (NHWC: a pixel's
channels are contiguous, so a window is walked one channel vector at a time -- full
vectors of the target's width, then the channels left over one at a time) and split
across the thread pool by images.

max_pool2d_grad finds each window's first maximum per lane (the index k of its
position in the window, row-major; a later element wins only if greater, or if it is
the first NaN), then writes ``k == winner ? dy : 0`` to every element of the window.
Windows that do not overlap (stride >= window) write each input element at most once,
so the gradient is stored, never zero-filled then added to; elements no window covers
(rows and columns known at compile time) are zeroed. Overlapping windows zero the
image first and add.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ... import target as targets
from .emit import I32, I64, LLTYPE, const, lane_splat, splat, vector_ptr


def lanes(dt) -> int:
    return max(1, targets.current().f32_lanes * 4 // dt.itemsize)


def channel_vectors(tc, C: int, vw: int, body):
    """``body(c, L)`` for channel offsets c covering [0, C): L = vw lanes, then 1."""
    full = C // vw * vw
    if full:
        with tc.loop(I64(full), name="cv", step=vw) as c:
            body(c, vw)
    if C % vw:
        with tc.loop(I64(C), start=I64(full), name="cs") as c:
            body(c, 1)


class Vec:
    """Vector loads and stores of L lanes of one dtype."""

    def __init__(self, tc, dt, L):
        self.tc, self.dt, self.L = tc, dt, L
        self.t = ll.VectorType(LLTYPE[dt], L)

    def splat(self, v):
        return splat(self.t, v)

    def load(self, p, off):
        b = self.tc.b
        return b.load(vector_ptr(b, p, off, self.t), align=self.dt.itemsize)

    def store(self, v, p, off):
        b = self.tc.b
        b.store(v, vector_ptr(b, p, off, self.t), align=self.dt.itemsize)


def _smax(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _smin(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _window_walk(tc, node, x_shape, out_hw, n_lo, n_hi, body):
    """For each image in [n_lo, n_hi) and output pixel: ``body(n, obase, y0, x0, (ylo,
    yhi), (xlo, xhi))`` -- obase: offset of its channels in the output, (y0, x0): the
    window's unclipped origin, then its rows and columns clipped to the image."""
    b = tc.b
    _, H, W, C = x_shape
    Ho, Wo = out_hw
    kh, kw = node.attrs["window"]
    sh, sw = node.attrs["strides"]
    pt, _, pl, _ = node.attrs["pads"]
    with tc.loop(n_hi, start=n_lo, name="n") as n:
        with tc.loop(I64(Ho), name="oy") as oy:
            y0 = b.sub(b.mul(oy, I64(sh)), I64(pt))
            ys = _smax(b, y0, I64(0)), _smin(b, b.add(y0, I64(kh)), I64(H))
            with tc.loop(I64(Wo), name="ox") as ox:
                x0 = b.sub(b.mul(ox, I64(sw)), I64(pl))
                xs = _smax(b, x0, I64(0)), _smin(b, b.add(x0, I64(kw)), I64(W))
                obase = b.mul(b.add(b.mul(b.add(b.mul(n, I64(Ho)), oy), I64(Wo)), ox), I64(C))
                body(n, obase, y0, x0, ys, xs)


def _window(tc, node, y0, x0, ys, xs, body):
    """``body(y, x)`` for each element of a window, row-major: unrolled when no window
    reaches into the padding (no pads: every window lies inside the image), else loops
    over the clipped rows and columns."""
    b = tc.b
    kh, kw = node.attrs["window"]
    if not any(node.attrs["pads"]) and kh * kw <= 16:
        for i in range(kh):
            for j in range(kw):
                body(b.add(y0, I64(i)), b.add(x0, I64(j)))
        return
    with tc.loop(ys[1], start=ys[0], name="y") as y:
        with tc.loop(xs[1], start=xs[0], name="x") as x:
            body(y, x)


def _pix(b, n, y, x, H, W, C):
    return b.mul(b.add(b.mul(b.add(b.mul(n, I64(H)), y), I64(W)), x), I64(C))


def _vmax(b, acc, v):
    """max(acc, v), NaN propagating (as np.maximum)."""
    m = b.select(b.fcmp_ordered(">", v, acc), v, acc)
    return b.select(b.fcmp_unordered("uno", v, v), v, m)


def emit_pool2d(kc, node):
    """max_pool2d / avg_pool2d into ``kc`` (args: out, x)."""
    x_t, out_t = node.inputs[0].type, node.outputs[0].type
    dt = x_t.dtype
    t = LLTYPE[dt]
    _, H, W, C = x_t.shape
    _, Ho, Wo, _ = out_t.shape
    kh, kw = node.attrs["window"]
    is_max = node.op.name == "max_pool2d"
    vw = lanes(dt)

    def images(tc, lo, hi):
        b = tc.b
        out_ptr, x_ptr = tc.args

        def pixel(n, obase, y0, x0, ys, xs):
            def chans(c, L):
                V = Vec(tc, dt, L)
                with b.goto_entry_block():
                    slot = b.alloca(V.t)
                b.store(V.splat(float("-inf") if is_max else 0.0), slot)
                def elem(y, x):
                    v = V.load(x_ptr, b.add(_pix(b, n, y, x, H, W, C), c))
                    acc = b.load(slot)
                    b.store(_vmax(b, acc, v) if is_max else b.fadd(acc, v), slot)

                _window(tc, node, y0, x0, ys, xs, elem)
                r = b.load(slot)
                if not is_max:
                    count = b.mul(b.sub(ys[1], ys[0]), b.sub(xs[1], xs[0]))
                    inv = b.fdiv(const(dt, 1), b.sitofp(count, t))
                    vinv = lane_splat(b, inv, V.t)
                    r = b.fmul(r, vinv)
                V.store(r, out_ptr, b.add(obase, c))

            channel_vectors(tc, C, vw, chans)

        _window_walk(tc, node, x_t.shape, (Ho, Wo), lo, hi, pixel)

    batch = kc.dim(x_t.shape[0])
    kc.parallel(batch, images, work=kc.b.mul(batch, I64(Ho * Wo * C * kh * kw)))


def _runs(flags):
    """[(start, end)] of the runs of True in a list of booleans."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    return out


def _covered(size, out, k, s, pad):
    cov = [False] * size
    for o in range(out):
        for i in range(k):
            if 0 <= o * s - pad + i < size:
                cov[o * s - pad + i] = True
    return cov


def emit_max_pool2d_grad(kc, node):
    """max_pool2d_grad into ``kc`` (args: dx, x, dy)."""
    x_t, dy_t = node.inputs[0].type, node.inputs[1].type
    dt = x_t.dtype
    _, H, W, C = x_t.shape
    _, Ho, Wo, _ = dy_t.shape
    kh, kw = node.attrs["window"]
    sh, sw = node.attrs["strides"]
    pt, _, pl, _ = node.attrs["pads"]
    disjoint = sh >= kh and sw >= kw
    vw = lanes(dt)
    rows = _covered(H, Ho, kh, sh, pt)
    cols = _covered(W, Wo, kw, sw, pl)

    def zero(tc, dx_ptr, start, count):
        with tc.loop(count, name="z") as z:
            tc.store(const(dt, 0), dx_ptr, tc.b.add(start, z), dt)

    def images(tc, lo, hi):
        b = tc.b
        dx_ptr, x_ptr, dy_ptr = tc.args
        if not disjoint:
            zero(tc, dx_ptr, b.mul(lo, I64(H * W * C)), b.mul(b.sub(hi, lo), I64(H * W * C)))
        else:   # what no window covers: whole rows, and columns of the covered rows
            with tc.loop(hi, start=lo, name="nz") as n:
                for r0, r1 in _runs([not f for f in rows]):
                    zero(tc, dx_ptr, _pix(b, n, I64(r0), I64(0), H, W, C), I64((r1 - r0) * W * C))
                for r0, r1 in _runs(rows):
                    gaps = _runs([not f for f in cols])
                    if gaps:
                        with tc.loop(I64(r1), start=I64(r0), name="zy") as y:
                            for c0, c1 in gaps:
                                zero(tc, dx_ptr, _pix(b, n, y, I64(c0), H, W, C), I64((c1 - c0) * C))

        def pixel(n, obase, y0, x0, ys, xs):
            def chans(c, L):
                V = Vec(tc, dt, L)
                it = ll.VectorType(I32, L)
                with b.goto_entry_block():
                    best_slot, idx_slot = b.alloca(V.t), b.alloca(it)
                b.store(V.splat(float("-inf")), best_slot)
                b.store(splat(it, -1), idx_slot)

                def k_of(y, x):
                    k = b.add(b.mul(b.sub(y, y0), I64(kw)), b.sub(x, x0))
                    return lane_splat(b, b.trunc(k, I32), it)

                def scan(y, x):
                    v = V.load(x_ptr, b.add(_pix(b, n, y, x, H, W, C), c))
                    best, idx = b.load(best_slot), b.load(idx_slot)
                    gt = b.and_(b.fcmp_ordered("ord", best, best), b.fcmp_unordered(">", v, best))
                    better = b.or_(b.icmp_signed("<", idx, splat(it, 0)), gt)
                    b.store(b.select(better, v, best), best_slot)
                    b.store(b.select(better, k_of(y, x), idx), idx_slot)

                _window(tc, node, y0, x0, ys, xs, scan)
                idx = b.load(idx_slot)
                g = V.load(dy_ptr, b.add(obase, c))
                zv = V.splat(0.0)

                def write(y, x):
                    off = b.add(_pix(b, n, y, x, H, W, C), c)
                    share = b.select(b.icmp_signed("==", idx, k_of(y, x)), g, zv)
                    if not disjoint:
                        share = b.fadd(V.load(dx_ptr, off), share)
                    V.store(share, dx_ptr, off)

                _window(tc, node, y0, x0, ys, xs, write)

            channel_vectors(tc, C, vw, chans)

        _window_walk(tc, node, x_t.shape, (Ho, Wo), lo, hi, pixel)

    batch = kc.dim(x_t.shape[0])
    kc.parallel(batch, images, work=kc.b.mul(batch, I64(H * W * C * 2)))

