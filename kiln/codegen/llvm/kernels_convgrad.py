"""conv2d_backprop_kernel as a register-blocked GEMM (f32, groups=1).

    dK[i,j,c,o] = sum_{n,y,x} x[n, y*sh + i*dh - top, x*sw + j*dw - left, c] * dy[n,y,x,o]

is C = A @ B with C = dK viewed as [kh*kw*C, O] (rows (i,j,c)), the k axis running over
the output pixels (n,y,x) (the batch-dependent axis), A = the input's windows read in
place (transposed im2col: row (i,j,c) at pixel p is one x element) and B = dy [pixels, O]
read in place (its rows are contiguous along O).

Microkernel: an MR x NR tile of C (NR = NV vectors) is accumulated in vector registers
over the pixels of a chunk of images: per pixel, NV vector loads of a dy row, MR scalar
x loads broadcast, MR*NV FMAs. Row blocks never straddle a kernel tap when the conv is
padded, so a block's valid output pixels form a rectangle (oy in [ylo, yhi), ox in
[xlo, xhi)) and no bounds are checked per pixel; unpadded convs have every tap inside
the image, so a block may be any MR consecutive rows (good for few input channels).

Parallelism: the images are split into up to SLABS slabs, each a thread-pool unit that
accumulates its own partial dK (slab 0 into dK itself, the others into the node's
scratch, see SCRATCH in kiln/passes/memory.py); the partials are summed at the end. Each
slab walks its images in chunks small enough for L2, and every tile of dK over a chunk,
so x and dy stream from memory once.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ... import target as targets
from ...ir.types import Affine, DType, Poly
from ...passes.memory import SCRATCH
from . import vmath
from .emit import F32, I8, I32, I64, KernelContext, lane_splat, ptr, splat

SLABS = 8            # partial sums of dK (thread-pool units)
CHUNK_PIXELS = 256   # output pixels per chunk of images, at least
CHUNK_BYTES = 256 * 1024
MIN_WORK = 1 << 20   # multiply-adds below which the kernel runs serially (kc.parallel's default)


def eligible(node) -> bool:
    x_t, dy_t = node.inputs[0].type, node.inputs[1].type
    return (node.attrs["groups"] == 1 and x_t.dtype is DType.f32 and dy_t.dtype is DType.f32
            and all(isinstance(d, int) for d in x_t.shape[1:]))


def scratch_bytes(node) -> Poly:
    if not eligible(node):
        return Poly()
    return Poly.of(Affine((SLABS - 1) * 4 * Affine.product(node.outputs[0].type.shape).coeff))


SCRATCH["conv2d_backprop_kernel"] = scratch_bytes


def context(module, name, node, symbols) -> KernelContext:
    """The kernel's function: dK, x, dy, then the scratch (i8*), then dims."""
    types = [ptr(node.outputs[0].type.dtype)] + [ptr(v.type.dtype) for v in node.inputs]
    return KernelContext(module, name, types + [I8.as_pointer()], symbols,
                         ["out0", "in0", "in1", "scratch"])


def _shape(O, C, padded, vw):
    """(MR, NV): rows per tile and vectors per tile row -- about 24 accumulators with
    AVX-512's 32 vector registers, 12 with 16; a padded conv's row blocks stay inside
    one tap, so there MR had better divide C."""
    if vw >= 16:
        nv = max(1, min(4, -(-O // vw)))
        choices = {4: (6, 4), 3: (8, 6, 4), 2: (12, 8, 6), 1: (12, 8, 6)}[nv]
    else:
        nv = max(1, min(2, -(-O // vw)))
        choices = {2: (6, 4, 3), 1: (12, 8, 6)}[nv]
    if padded:
        for mr in choices:
            if C % mr == 0:
                return mr, nv
    return choices[0], nv


def emit_backprop_kernel_gemm(module, name, node, symbols):
    x_t, dy_t = node.inputs[0].type, node.inputs[1].type
    _, H, W, C = x_t.shape
    _, Ho, Wo, O = dy_t.shape
    kh, kw = node.attrs["kernel"]
    sh, sw = node.attrs["strides"]
    dh, dw = node.attrs["dilations"]
    top, _, left, _ = node.attrs["pads"]
    padded = any(node.attrs["pads"])
    VW = targets.current().f32_lanes
    MR, NV = _shape(O, C, padded, VW)
    NR = NV * VW
    npan = -(-O // NR)
    last_w = O - (npan - 1) * NR
    DK = kh * kw * C * O
    vt = ll.VectorType(F32, VW)
    zero_v = splat(vt, 0.0)
    img_bytes = 4 * (H * W * C + Ho * Wo * O)
    imgs = max(1, min(-(-CHUNK_PIXELS // (Ho * Wo)), CHUNK_BYTES // img_bytes))

    kc = context(module, name, node, symbols)
    b = kc.b

    def smin(p, q, bb):
        return bb.select(bb.icmp_signed("<", p, q), p, q)

    def smax(p, q, bb):
        return bb.select(bb.icmp_signed(">", p, q), p, q)

    def clip(bb, k, d, s, pad, size, osize):
        """[lo, hi) of output positions whose tap k lands inside [0, size)."""
        a = bb.sub(I64(pad), bb.mul(k, I64(d)))            # oy*s >= a
        lo = bb.select(bb.icmp_signed(">", a, I64(0)),
                       bb.sdiv(bb.add(a, I64(s - 1)), I64(s)), I64(0))
        e = bb.add(a, I64(size - 1))                         # oy*s <= e
        hi = bb.select(bb.icmp_signed("<", e, I64(0)), I64(0),
                       smin(bb.add(bb.sdiv(e, I64(s)), I64(1)), I64(osize), bb))
        return lo, smax(hi, lo, bb)

    def micro(tc, part, x_ptr, dy_ptr, n0, n1, R, offs, row0, pan, width, ranges):
        """part[row0 + r, pan*NR + (0..width)] += sum over the chunk's pixels."""
        bb = tc.b
        nv = -(-width // VW)
        with bb.goto_entry_block():
            accs = [[bb.alloca(vt) for _ in range(nv)] for _ in range(R)]
        for row in accs:
            for a in row:
                bb.store(zero_v, a)
        (ylo, yhi), (xlo, xhi) = ranges
        col0 = bb.mul(pan, I64(NR))
        with tc.loop(n1, start=n0, name="n") as n:
            with tc.loop(yhi, start=ylo, name="oy") as oy:
                xrow = bb.mul(bb.add(bb.mul(n, I64(H)), bb.mul(oy, I64(sh))), I64(W * C))
                drow = bb.add(bb.mul(bb.add(bb.mul(n, I64(Ho)), oy), I64(Wo * O)), col0)
                with tc.loop(xhi, start=xlo, name="ox") as ox:
                    xb = bb.add(xrow, bb.mul(ox, I64(sw * C)))
                    db = bb.add(drow, bb.mul(ox, I64(O)))
                    bvec = []
                    for v in range(nv):
                        lanes = min(VW, width - v * VW)
                        if lanes == VW:
                            p = bb.gep(dy_ptr, [bb.add(db, I64(v * VW))], inbounds=True)
                            bvec.append(bb.load(bb.bitcast(p, vt.as_pointer()), align=4))
                        else:       # the last columns of a partial panel: no over-read
                            vec = zero_v
                            for e in range(lanes):
                                vec = bb.insert_element(vec, tc.load(dy_ptr, bb.add(db, I64(v * VW + e)),
                                                                     DType.f32), I32(e))
                            bvec.append(vec)
                    for r in range(R):
                        a = tc.load(x_ptr, bb.add(xb, offs[r]), DType.f32)
                        sa = lane_splat(bb, a, vt)
                        for v in range(nv):
                            bb.store(vmath.fma(bb, module, sa, bvec[v], bb.load(accs[r][v])), accs[r][v])
        for r in range(R):
            base = bb.add(bb.mul(bb.add(row0, I64(r)), I64(O)), col0)
            for v in range(nv):
                lanes = min(VW, width - v * VW)
                acc = bb.load(accs[r][v])
                if lanes == VW:
                    p = bb.bitcast(bb.gep(part, [bb.add(base, I64(v * VW))], inbounds=True), vt.as_pointer())
                    bb.store(bb.fadd(bb.load(p, align=4), acc), p, align=4)
                else:
                    for e in range(lanes):
                        i = bb.add(base, I64(v * VW + e))
                        tc.store(bb.fadd(tc.load(part, i, DType.f32), bb.extract_element(acc, I32(e))),
                                 part, i, DType.f32)

    def panels(tc, part, x_ptr, dy_ptr, n0, n1, R, offs, row0, ranges):
        full = npan if last_w == NR else npan - 1
        with tc.loop(I64(full), name="pan") as pan:
            micro(tc, part, x_ptr, dy_ptr, n0, n1, R, offs, row0, pan, NR, ranges)
        if full < npan:
            micro(tc, part, x_ptr, dy_ptr, n0, n1, R, offs, row0, I64(full), last_w, ranges)

    def chunk(tc, part, x_ptr, dy_ptr, n0, n1):
        bb = tc.b
        if not padded:   # any MR consecutive rows (i, j, c): every tap is inside the image
            rows = kh * kw * C
            full = rows // MR
            whole = ((I64(0), I64(Ho)), (I64(0), I64(Wo)))

            def block(t0, R):
                offs = []
                for r in range(R):
                    t = bb.add(t0, I64(r))
                    c = bb.srem(t, I64(C))
                    tap = bb.sdiv(t, I64(C))
                    i, j = bb.sdiv(tap, I64(kw)), bb.srem(tap, I64(kw))
                    offs.append(bb.add(bb.mul(bb.add(bb.mul(i, I64(dh * W)), bb.mul(j, I64(dw))),
                                              I64(C)), c))
                panels(tc, part, x_ptr, dy_ptr, n0, n1, R, offs, t0, whole)

            with tc.loop(I64(full), name="blk") as blk:
                block(bb.mul(blk, I64(MR)), MR)
            if rows % MR:
                block(I64(full * MR), rows % MR)
            return
        full = C // MR
        with tc.loop(I64(kh), name="ti") as i:
            yr = clip(bb, i, dh, sh, top, H, Ho)
            with tc.loop(I64(kw), name="tj") as j:
                xr = clip(bb, j, dw, sw, left, W, Wo)
                tap_off = bb.mul(bb.add(bb.mul(bb.sub(bb.mul(i, I64(dh)), I64(top)), I64(W)),
                                        bb.sub(bb.mul(j, I64(dw)), I64(left))), I64(C))
                tap_row = bb.mul(bb.add(bb.mul(i, I64(kw)), j), I64(C))

                def block(c0, R):
                    offs = [bb.add(tap_off, bb.add(c0, I64(r))) for r in range(R)]
                    panels(tc, part, x_ptr, dy_ptr, n0, n1, R, offs, bb.add(tap_row, c0), (yr, xr))

                with tc.loop(I64(full), name="cb") as cb:
                    block(bb.mul(cb, I64(MR)), MR)
                if C % MR:
                    block(I64(full * MR), C % MR)

    def slab_count(ctx):
        """(slabs, work): one slab -- no partial sums to add up -- when the kernel runs
        serially anyway (no pool, or too little work for kc.parallel to split it)."""
        bb = ctx.b
        n_all = ctx.dim(x_t.shape[0])
        work = bb.mul(n_all, I64(Ho * Wo * kh * kw * C * O))
        pool = bb.load(bb.gep(ctx.dims_ptr, [I64(len(ctx.symbols))]))
        serial = bb.or_(bb.icmp_signed("==", pool, I64(0)), bb.icmp_signed("<", work, I64(MIN_WORK)))
        return bb.select(serial, I64(1), smax(smin(n_all, I64(SLABS), bb), I64(1), bb)), work

    def slabs(tc, lo, hi):
        bb = tc.b
        dk_ptr, x_ptr, dy_ptr, scr = tc.args
        scr_f = bb.bitcast(scr, F32.as_pointer())
        n_all = tc.dim(x_t.shape[0])
        ns, _ = slab_count(tc)
        with tc.loop(hi, start=lo, name="slab") as s:
            other = bb.gep(scr_f, [bb.mul(bb.sub(s, I64(1)), I64(DK))], inbounds=True)
            part = bb.select(bb.icmp_signed("==", s, I64(0)), dk_ptr, other)
            with tc.loop(I64(DK), name="z") as z:
                tc.store(ll.Constant(F32, 0.0), part, z, DType.f32)
            nb = bb.sdiv(bb.mul(s, n_all), ns)
            ne = bb.sdiv(bb.mul(bb.add(s, I64(1)), n_all), ns)
            with tc.loop(ne, start=nb, name="chunk", step=imgs) as n0:
                chunk(tc, part, x_ptr, dy_ptr, n0, smin(bb.add(n0, I64(imgs)), ne, bb))

    nslab, work = slab_count(kc)
    kc.parallel(nslab, slabs, work=work, min_work=MIN_WORK)
    dk_ptr, _, _, scr = kc.args
    scr_f = b.bitcast(scr, F32.as_pointer())
    with kc.loop(nslab, start=I64(1), name="sum") as s:
        other = b.gep(scr_f, [b.mul(b.sub(s, I64(1)), I64(DK))], inbounds=True)
        with kc.loop(I64(DK), name="k") as k:
            kc.store(b.fadd(kc.load(dk_ptr, k, DType.f32), kc.load(other, k, DType.f32)),
                     dk_ptr, k, DType.f32)
    return kc.finish()
