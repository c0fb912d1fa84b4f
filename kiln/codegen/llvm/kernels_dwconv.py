"""Depthwise conv2d (groups == input channels == output channels: Keras' DepthwiseConv2D
with depth_multiplier 1, the first half of SeparableConv2D), NHWC.

Each output channel reads one input channel, so there is no reduction over channels to
block into a GEMM: the work is kh*kw multiply-adds per output element, and the kernel
is bound by loads. It walks one output row (n, oy) at a time, a channel vector at a time
(full vectors of the target's width, then the channels left over one at a time): the
vector's kh*kw weights are loaded once into registers, then for every output pixel of the
row an accumulator starts at zero and takes the taps in row-major order -- the order of
the generic kernel, so results are the same sums -- and is stored once. Columns whose
window lies inside the image (known at compile time) run without bounds checks; the few
at the edges check each tap's column, and a tap row outside the image is skipped as a
whole. A fused epilogue runs over each finished output row while it is in cache. Rows
are split across the thread pool.
"""
from __future__ import annotations

from . import vmath
from .emit import I64
from .kernels_pool import Vec, channel_vectors, lanes

MAX_TAPS = 49          # 7x7: unrolled, weights hoisted; larger windows take the generic kernel
MIN_WORK = 1 << 16     # multiply-adds from which rows are split across the pool


def depthwise_ok(node) -> bool:
    """Whether a conv2d node takes this kernel."""
    x_t, w_t = node.inputs[0].type, node.inputs[1].type
    kh, kw, cg, O = w_t.shape
    C = x_t.shape[-1]
    return (cg == 1 and node.attrs["groups"] == C == O and x_t.dtype.is_float
            and w_t.dtype is x_t.dtype and kh * kw <= MAX_TAPS
            and all(isinstance(d, int) for d in x_t.shape[1:]))


def interior(size: int, out: int, k: int, stride: int, dil: int, pad: int) -> tuple[int, int]:
    """[lo, hi): the output positions whose whole window lies inside [0, size)."""
    lo = min(out, -(-pad // stride))
    hi = max(lo, min(out, (size - 1 - (k - 1) * dil + pad) // stride + 1))
    return lo, hi


def depthwise_parallel(kc, node, emit):
    """``emit(tc, lo, hi)`` over the output rows [0, N*Ho), split across the pool."""
    x_t, w_t, out_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    _, Ho, Wo, O = out_t.shape
    kh, kw = w_t.shape[:2]
    rows = kc.b.mul(kc.dim(x_t.shape[0]), I64(Ho))
    kc.parallel(rows, emit, work=kc.b.mul(rows, I64(Wo * O * kh * kw)), min_work=MIN_WORK)


class _Windows:
    """The window walk the forward kernel and the kernel gradient share: the geometry
    of a depthwise conv2d (x [N,H,W,C], output or dy [N,Ho,Wo,C]) and, per output row,
    the tap rows inside the image."""

    def __init__(self, node, out_t, kernel_hw):
        self.H, self.W, self.C = node.inputs[0].type.shape[1:]
        self.Ho, self.Wo = out_t.shape[1:3]
        self.kh, self.kw = kernel_hw
        (self.sh, self.sw), (self.dh, self.dw) = node.attrs["strides"], node.attrs["dilations"]
        self.pt, _, self.pl, _ = node.attrs["pads"]
        self.xlo, self.xhi = interior(self.W, self.Wo, self.kw, self.sw, self.dw, self.pl)

    def row(self, b, r):
        """Per tap row i of output row r (= n*Ho + oy): whether it is inside the image,
        and the offset of its first pixel in x."""
        n, oy = b.sdiv(r, I64(self.Ho)), b.srem(r, I64(self.Ho))
        iys = [b.add(b.mul(oy, I64(self.sh)), I64(i * self.dh - self.pt)) for i in range(self.kh)]
        return ([b.icmp_unsigned("<", iy, I64(self.H)) for iy in iys],
                [b.mul(b.add(b.mul(n, I64(self.H)), iy), I64(self.W * self.C)) for iy in iys])

    def pixels(self, tc, row, V, x_ptr, c, start, mac, finish=None):
        """Each output column ox of a row -- the left edge, the interior (no column
        checks), the right edge: ``state = start(ox)``, then ``mac(i, j, x vector,
        state)`` for every tap inside the image (row-major), then ``finish(ox, state)``."""
        b = tc.b
        valid, bases = row
        for lo, hi, edge in ((0, self.xlo, True), (self.xlo, self.xhi, False), (self.xhi, self.Wo, True)):
            if lo >= hi:
                continue
            with tc.loop(I64(hi), start=I64(lo), name="ox") as ox:
                state = start(ox)
                x0 = b.sub(b.mul(ox, I64(self.sw)), I64(self.pl))
                for i in range(self.kh):
                    with b.if_then(valid[i]):
                        for j in range(self.kw):
                            ix = b.add(x0, I64(j * self.dw))

                            def tap(i=i, j=j, ix=ix):
                                mac(i, j, V.load(x_ptr, b.add(b.add(bases[i], b.mul(ix, I64(self.C))), c)), state)
                            if edge:
                                with b.if_then(b.icmp_unsigned("<", ix, I64(self.W))):
                                    tap()
                            else:
                                tap()
                if finish is not None:
                    finish(ox, state)


def depthwise_rows(tc, node, out_ptr, x_ptr, w_ptr, lo, hi, epilogue=None):
    """Output rows [lo, hi) of a depthwise conv2d; ``epilogue(pixel, j0, width)`` (a fused
    group's, over flat pixel rows of the output) after each row when given."""
    b = tc.b
    dt = node.inputs[0].type.dtype
    win = _Windows(node, node.outputs[0].type, node.inputs[1].type.shape[:2])
    C, Wo, kw = win.C, win.Wo, win.kw
    with tc.loop(hi, start=lo, name="r") as r:
        row = win.row(b, r)
        obase = b.mul(r, I64(Wo * C))

        def chans(c, L):
            V = Vec(tc, dt, L)
            ws = [[V.load(w_ptr, b.add(I64((i * kw + j) * C), c)) for j in range(kw)] for i in range(win.kh)]
            with b.goto_entry_block():
                slot = b.alloca(V.t)

            def start(ox):
                b.store(V.splat(0.0), slot)

            def mac(i, j, xv, _):
                b.store(vmath.fma(b, tc.module, xv, ws[i][j], b.load(slot)), slot)

            def finish(ox, _):
                V.store(b.load(slot), out_ptr, b.add(b.add(obase, b.mul(ox, I64(C))), c))

            win.pixels(tc, row, V, x_ptr, c, start, mac, finish)

        channel_vectors(tc, C, lanes(dt), chans)
        if epilogue is not None:
            with tc.loop(I64(Wo), name="ep") as ox:
                epilogue(b.add(b.mul(r, I64(Wo)), ox), I64(0), I64(C))


def backprop_kernel_ok(node) -> bool:
    """Whether a conv2d_backprop_kernel node (x, dy -> dw) is a depthwise one this
    kernel takes."""
    x_t, dy_t, w_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    kh, kw, cg, O = w_t.shape
    C = x_t.shape[-1]
    return (cg == 1 and node.attrs["groups"] == C == O and x_t.dtype.is_float
            and dy_t.dtype is x_t.dtype and kh * kw <= MAX_TAPS
            and all(isinstance(d, int) for d in x_t.shape[1:]))


def emit_backprop_kernel(kc, node):
    """dw[i, j, 0, c] = sum over output pixels of x[window tap (i, j), c] * dy[pixel, c]:
    one work unit per channel vector (then per channel left over), which walks every
    output pixel in order with the kh*kw sums in registers -- x and dy are read once in
    all, and each sum is taken in the same order for any thread count."""
    b = kc.b
    x_t, dy_t, w_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    dt = x_t.dtype
    win = _Windows(node, dy_t, w_t.shape[:2])
    C, Ho, Wo, kh, kw = win.C, win.Ho, win.Wo, win.kh, win.kw
    vw = lanes(dt)
    nfull, ntail = C // vw, C % vw

    def block(tc, c, L):
        tb = tc.b
        w_ptr, x_ptr, dy_ptr = tc.args[:3]
        V = Vec(tc, dt, L)
        with tb.goto_entry_block():
            accs = [tb.alloca(V.t) for _ in range(kh * kw)]
        for a in accs:
            tb.store(V.splat(0.0), a)

        def mac(i, j, xv, g):
            a = accs[i * kw + j]
            tb.store(vmath.fma(tb, tc.module, xv, g, tb.load(a)), a)

        with tc.loop(tb.mul(tc.dim(x_t.shape[0]), I64(Ho)), name="r") as r:
            win.pixels(tc, win.row(tb, r), V, x_ptr, c,
                       lambda ox: V.load(dy_ptr, tb.add(tb.mul(tb.add(tb.mul(r, I64(Wo)), ox), I64(C)), c)),
                       mac)
        for t, a in enumerate(accs):
            V.store(tb.load(a), w_ptr, tb.add(I64(t * C), c))

    def task(tc, lo, hi):
        tb = tc.b
        with tc.loop(hi, start=lo, name="u") as u:
            if not ntail:
                block(tc, tb.mul(u, I64(vw)), vw)
            else:
                with tb.if_else(tb.icmp_signed("<", u, I64(nfull))) as (full, tail):
                    with full:
                        if nfull:
                            block(tc, tb.mul(u, I64(vw)), vw)
                    with tail:
                        block(tc, tb.add(I64(nfull * vw - nfull), u), 1)

    units = nfull + ntail
    work = b.mul(b.mul(kc.dim(x_t.shape[0]), I64(Ho * Wo)), I64(C * kh * kw))
    kc.parallel(I64(units), task, work=work, min_work=MIN_WORK)
