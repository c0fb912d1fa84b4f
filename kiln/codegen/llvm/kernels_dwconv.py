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

from .emit import I64
from .kernels_pool import Vec, channel_vectors, lanes

MAX_TAPS = 49          # 7x7: unrolled, weights hoisted; larger windows take the generic kernel
MIN_WORK = 1 << 16     # multiply-adds from which rows are split across the pool
_FLAGS = ["contract"]


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


def depthwise_rows(tc, node, out_ptr, x_ptr, w_ptr, lo, hi, epilogue=None):
    """Output rows [lo, hi) of a depthwise conv2d; ``epilogue(pixel, j0, width)`` (a fused
    group's, over flat pixel rows of the output) after each row when given."""
    b = tc.b
    x_t, w_t, out_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    dt = x_t.dtype
    _, H, W, C = x_t.shape
    _, Ho, Wo, _ = out_t.shape
    kh, kw = w_t.shape[:2]
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    pt, _, pl, _ = node.attrs["pads"]
    xlo, xhi = interior(W, Wo, kw, sw, dw, pl)
    with tc.loop(hi, start=lo, name="r") as r:
        n, oy = b.sdiv(r, I64(Ho)), b.srem(r, I64(Ho))
        iys = [b.add(b.mul(oy, I64(sh)), I64(i * dh - pt)) for i in range(kh)]
        valid = [b.icmp_unsigned("<", iy, I64(H)) for iy in iys]
        bases = [b.mul(b.add(b.mul(n, I64(H)), iy), I64(W * C)) for iy in iys]
        obase = b.mul(r, I64(Wo * C))

        def chans(c, L):
            V = Vec(tc, dt, L)
            ws = [[V.load(w_ptr, b.add(I64((i * kw + j) * C), c)) for j in range(kw)] for i in range(kh)]
            with b.goto_entry_block():
                slot = b.alloca(V.t)

            def pixels(start, stop, edge):
                if start >= stop:
                    return
                with tc.loop(I64(stop), start=I64(start), name="ox") as ox:
                    b.store(V.splat(0.0), slot)
                    x0 = b.sub(b.mul(ox, I64(sw)), I64(pl))
                    for i in range(kh):
                        with b.if_then(valid[i]):
                            for j in range(kw):
                                ix = b.add(x0, I64(j * dw))

                                def mac(i=i, j=j, ix=ix):
                                    xv = V.load(x_ptr, b.add(b.add(bases[i], b.mul(ix, I64(C))), c))
                                    acc = b.fadd(b.load(slot), b.fmul(xv, ws[i][j], flags=_FLAGS), flags=_FLAGS)
                                    b.store(acc, slot)
                                if edge:
                                    with b.if_then(b.icmp_unsigned("<", ix, I64(W))):
                                        mac()
                                else:
                                    mac()
                    V.store(b.load(slot), out_ptr, b.add(b.add(obase, b.mul(ox, I64(C))), c))

            pixels(0, xlo, True)
            pixels(xlo, xhi, False)
            pixels(xhi, Wo, True)

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
    _, H, W, C = x_t.shape
    _, Ho, Wo, _ = dy_t.shape
    kh, kw = w_t.shape[:2]
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    pt, _, pl, _ = node.attrs["pads"]
    xlo, xhi = interior(W, Wo, kw, sw, dw, pl)
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
        rows = tb.mul(tc.dim(x_t.shape[0]), I64(Ho))
        with tc.loop(rows, name="r") as r:
            n, oy = tb.sdiv(r, I64(Ho)), tb.srem(r, I64(Ho))
            iys = [tb.add(tb.mul(oy, I64(sh)), I64(i * dh - pt)) for i in range(kh)]
            valid = [tb.icmp_unsigned("<", iy, I64(H)) for iy in iys]
            bases = [tb.mul(tb.add(tb.mul(n, I64(H)), iy), I64(W * C)) for iy in iys]

            def pixels(start, stop, edge):
                if start >= stop:
                    return
                with tc.loop(I64(stop), start=I64(start), name="ox") as ox:
                    g = V.load(dy_ptr, tb.add(tb.mul(tb.add(tb.mul(r, I64(Wo)), ox), I64(C)), c))
                    x0 = tb.sub(tb.mul(ox, I64(sw)), I64(pl))
                    for i in range(kh):
                        with tb.if_then(valid[i]):
                            for j in range(kw):
                                ix = tb.add(x0, I64(j * dw))

                                def mac(i=i, j=j, ix=ix):
                                    xv = V.load(x_ptr, tb.add(tb.add(bases[i], tb.mul(ix, I64(C))), c))
                                    a = accs[i * kw + j]
                                    tb.store(tb.fadd(tb.load(a), tb.fmul(xv, g, flags=_FLAGS), flags=_FLAGS), a)
                                if edge:
                                    with tb.if_then(tb.icmp_unsigned("<", ix, I64(W))):
                                        mac()
                                else:
                                    mac()

            pixels(0, xlo, True)
            pixels(xlo, xhi, False)
            pixels(xhi, Wo, True)
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
