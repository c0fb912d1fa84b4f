"""conv2d_transpose in gather form, register-blocked across images.

    out[n, oy, ox, o] = sum over the taps (i, j) that hit (oy, ox), sum_c x[n, iy, ix, c] * w[i, j, o, c]

where tap i hits output row oy when oy + top - i*dh = iy*sh for an input row iy in
[0, H) (columns likewise). Every output element is written once (no zero fill, no
scatter). Which taps hit depends on the output pixel only, so a tile of MR images x NO
output channels at one pixel shares its taps exactly: no work is wasted on the zero
rows a stride inserts or on the padding of the "full" convolution. The kernel is read
as Keras lays it out, [kh, kw, O, C] (contiguous along C), so the tile accumulates
MR*NO vectors along c (MR x loads, NO w loads, MR*NO FMAs per channel vector) and sums
each across lanes at the end. The batch's last N mod MR images (all of them at batch 1)
tile MR adjacent output pixels of a row instead, where the same taps hit them all.
Work units of the thread pool: blocks of MR images.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ... import target as targets
from . import vmath
from .emit import I32, I64, LLTYPE, splat, vector_ptr



def _tile():
    """(MR images, NO output channels): 16 accumulators with AVX-512's 32 vector
    registers, 8 with 16."""
    return (4, 4) if targets.current().f32_lanes >= 16 else (2, 4)


def _lanes(dt, C):
    vw = max(1, targets.current().f32_lanes * 4 // dt.itemsize)
    while vw > 1 and vw > C:
        vw //= 2
    return vw


def _reduce_lanes(b, vecs):
    """The lane sums of each vector in ``vecs`` (all of one type), as scalars. Vectors
    are combined pairwise -- each half of every lane group of one added to the other
    half, the halves of two vectors packed into one -- so k vectors of n lanes take
    about 3k shuffles and adds, not k*log2(n)."""
    vt = vecs[0].type
    n = vt.count
    items = [(v, [k]) for k, v in enumerate(vecs)]     # (vector, ids of its lane groups)
    g = n
    zero = splat(vt, 0.0)
    while g > 1:
        if len(items) % 2:
            items.append((zero, [None] * len(items[0][1])))
        half = g // 2
        lo = [grp * g + e for grp in range(n // g) for e in range(half)]
        hi = [grp * g + half + e for grp in range(n // g) for e in range(half)]
        nxt = []
        for (a, ia), (c, ic) in zip(items[::2], items[1::2]):
            m1 = ll.Constant(ll.VectorType(I32, n), lo + [n + k for k in lo])
            m2 = ll.Constant(ll.VectorType(I32, n), hi + [n + k for k in hi])
            nxt.append((b.fadd(b.shuffle_vector(a, c, m1), b.shuffle_vector(a, c, m2)), ia + ic))
        items, g = nxt, half
    out = {}
    for v, ids in items:
        for lane, k in enumerate(ids):
            if k is not None:
                out[k] = b.extract_element(v, I32(lane))
    return [out[k] for k in range(len(vecs))]


def emit_conv2d_transpose_gather(kc, node):
    """Into ``kc`` (args: out, x, w)."""
    x_t, w_t, out_t = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    dt = x_t.dtype
    _, H, W, C = x_t.shape
    kh, kw, O, _ = w_t.shape
    _, Ho, Wo, _ = out_t.shape
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    pt, _, pl, _ = node.attrs["pads"]
    vw = _lanes(dt, C)
    MR, NO = _tile()
    vt = ll.VectorType(LLTYPE[dt], vw)
    cfull = C // vw
    zero_v = splat(vt, 0.0)
    m = kc.module

    def hit(b, o, k, d, s, pad, size):
        """(condition, input index) of tap k (i64) at output position o."""
        t = b.sub(b.add(o, I64(pad)), b.mul(k, I64(d)))
        q = b.sdiv(t, I64(s)) if s > 1 else t
        ok = b.icmp_unsigned("<", q, I64(size))
        if s > 1:
            ok = b.and_(ok, b.and_(b.icmp_signed(">=", t, I64(0)),
                                   b.icmp_signed("==", b.srem(t, I64(s)), I64(0))))
        return ok, q

    def tile(tc, rows, oy, ox, o0, NOr):
        """out[n_r, oy, ox + d_r, o0:o0+NOr] for the rows (n_r, d_r), which must share
        the taps that hit (oy, ox) (d_r > 0 only with a column stride of 1)."""
        b = tc.b
        out_ptr, x_ptr, w_ptr = tc.args
        R = len(rows)
        with b.goto_entry_block():
            accs = [[b.alloca(vt) for _ in range(NOr)] for _ in range(R)]
        for row in accs:
            for a in row:
                b.store(zero_v, a)

        def vload(p, off):
            return b.load(vector_ptr(b, p, off, vt), align=dt.itemsize)

        def tail_load(p, off):
            v = zero_v
            for e in range(C - cfull * vw):
                v = b.insert_element(v, tc.load(p, b.add(off, I64(cfull * vw + e)), dt), I32(e))
            return v

        with tc.loop(I64(kh), name="i") as i:
            oky, iy = hit(b, oy, i, dh, sh, pt, H)
            with b.if_then(oky):
                with tc.loop(I64(kw), name="j") as j:
                    okx, ix = hit(b, ox, j, dw, sw, pl, W)
                    with b.if_then(okx):
                        xb = [b.mul(b.add(b.mul(b.add(b.mul(n, I64(H)), iy), I64(W)), b.add(ix, I64(d))),
                                    I64(C)) for n, d in rows]
                        wb = [b.mul(b.add(b.mul(b.add(b.mul(i, I64(kw)), j), I64(O)),
                                          b.add(o0, I64(q))), I64(C)) for q in range(NOr)]

                        def step(c, load):
                            xv = [load(x_ptr, b.add(xb[r], c)) for r in range(R)]
                            wv = [load(w_ptr, b.add(wb[q], c)) for q in range(NOr)]
                            for r in range(R):
                                for q in range(NOr):
                                    b.store(vmath.fma(b, m, xv[r], wv[q], b.load(accs[r][q])), accs[r][q])

                        if cfull:
                            with tc.loop(I64(cfull * vw), name="c", step=vw) as c:
                                step(c, vload)
                        if C % vw:
                            step(I64(0), tail_load)
        sums = _reduce_lanes(b, [b.load(a) for row in accs for a in row]) if vw > 1 else \
            [b.extract_element(b.load(a), I32(0)) for row in accs for a in row]
        for r, (n, d) in enumerate(rows):
            obase = b.add(b.mul(b.add(b.mul(b.add(b.mul(n, I64(Ho)), oy), I64(Wo)), b.add(ox, I64(d))),
                                I64(O)), o0)
            for q in range(NOr):
                tc.store(sums[r * NOr + q], out_ptr, b.add(obase, I64(q)), dt)

    def channels(tc, rows, oy, ox):
        with tc.loop(I64(O // NO * NO), name="ob", step=NO) as o0:
            tile(tc, rows, oy, ox, o0, NO)
        if O % NO:
            tile(tc, rows, oy, ox, I64(O // NO * NO), O % NO)

    def image_block(tc, n0):
        """MR images, one output pixel at a time."""
        with tc.loop(I64(Ho), name="oy") as oy:
            with tc.loop(I64(Wo), name="ox") as ox:
                channels(tc, [(tc.b.add(n0, I64(r)), 0) for r in range(MR)], oy, ox)

    def one_image(tc, n):
        """One image (the batch's last N mod MR): MR adjacent output pixels of a row at
        a time where the same taps hit them all (column stride 1), else one by one."""
        b = tc.b
        blocked = Wo // MR * MR if sw == 1 else 0
        with tc.loop(I64(Ho), name="oy") as oy:
            if blocked:
                with tc.loop(I64(blocked), name="ox", step=MR) as ox0:
                    last = b.add(ox0, I64(MR - 1))
                    same = ll.Constant(ll.IntType(1), 1)
                    for j in range(kw):   # a tap's columns are an interval: its ends decide
                        same = b.and_(same, b.icmp_unsigned("==", hit(b, ox0, I64(j), dw, 1, pl, W)[0],
                                                            hit(b, last, I64(j), dw, 1, pl, W)[0]))
                    with b.if_else(same) as (together, apart):
                        with together:
                            channels(tc, [(n, r) for r in range(MR)], oy, ox0)
                        with apart:
                            with tc.loop(b.add(ox0, I64(MR)), start=ox0, name="ox1") as ox:
                                channels(tc, [(n, 0)], oy, ox)
            with tc.loop(I64(Wo), start=I64(blocked), name="oxt") as ox:
                channels(tc, [(n, 0)], oy, ox)

    def blocks(tc, lo, hi):
        b = tc.b
        N = tc.dim(x_t.shape[0])
        with tc.loop(hi, start=lo, name="nb") as nb:
            n0 = b.mul(nb, I64(MR))
            with b.if_else(b.icmp_signed("<=", b.add(n0, I64(MR)), N)) as (full, part):
                with full:
                    image_block(tc, n0)
                with part:
                    with tc.loop(N, start=n0, name="n1") as n1:
                        one_image(tc, n1)

    N = kc.dim(x_t.shape[0])
    units = kc.b.sdiv(kc.b.add(N, I64(MR - 1)), I64(MR))
    kc.parallel(units, blocks, work=kc.b.mul(N, I64(H * W * kh * kw * C * O)))
