"""The Winograd F(2x2, 3x3) conv kernel (kiln/ir/ops/winograd.py has the algebra).

A work unit is (image, block of TB consecutive tiles, group of output panels). Its
three steps stay in the core's caches -- the transformed input and the 16 GEMM
results live in the task's stack buffers, never in memory the graph sees:

1. input transform: V[xi, t, c] = (B^T d B)[xi] for the block's tiles, channels in
   vectors (B^T holds 0 and +-1: additions only; pixels outside the image read 0);
2. 16 GEMMs M[xi] = V[xi] @ U[xi] by the packed microkernel (kernels_gemm), over the
   unit's panels only;
3. output transform: Y = A^T M A per tile and channel vector, stored into the output
   (pixels past its edge go to a scratch vector) -- or, with ``pool``, the maximum of
   the tile's four pixels as one pooled pixel -- then the fused epilogue (bias,
   activation, residual) per finished pixel while it is in cache.

Stack per task: V is 16*TB*C floats and M 16*TB*O, each at most BUF_FLOATS (TB is
chosen for that; the layout pass picks Winograd only for C, O <= 256, where TB >= MR),
so a task stays under ~260 KB on the AOT library's caller thread too.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.ops.winograd import AT, BT, tiles
from .emit import I64, LLTYPE, splat, vector_ptr
from .kernels import kernel, kernel_context
from .kernels_attention import _gemm_node
from .kernels_gemm import MR, gemm_packed_into, nan_max, vec_width

BUF_FLOATS = 1 << 15       # each of V and M: 128 KB
MAX_TILES = 48             # rows of one GEMM (8 MR blocks)
MIN_WORK = 1 << 16
#: a unit's share of the transformed kernel U (16 x C x its columns) is at most this
#: when U is larger, and units go group by group (the pool gives each thread a run of
#: consecutive units: its groups' U stays in its L2 across images)
U_BYTES = 256 << 10
GROUP_MAJOR = True


def plan(node) -> dict:
    """The unit geometry of a conv2d_winograd node (all static but the batch)."""
    _, H, W, C = node.inputs[0].type.shape
    _, P, _, NR = node.inputs[1].type.shape
    _, OH, OW, O = node.outputs[0].type.shape
    pool = bool(node.attrs["pool"])
    th, tw = (OH, OW) if pool else tiles(OH, OW)    # pooled: one output pixel per tile
    T = th * tw
    cap = max(MR, min(MAX_TILES, BUF_FLOATS // 16 // max(C, O) // MR * MR))
    blocks = -(-T // cap)
    if blocks < 4:          # small images (batch 1): enough units for the pool
        blocks = min(4, -(-T // MR))
    per_block = -(-T // blocks)
    tb = -(-per_block // MR) * MR          # whole MR blocks of GEMM rows, at most cap
    blocks = -(-T // tb)
    # fewer than 4 tile blocks per image: split the output panels too
    groups = 1 if blocks >= 4 or P == 1 else min(P, -(-4 // blocks))
    per_group = -(-P // groups)
    panel_bytes = 16 * C * NR * node.inputs[0].type.dtype.itemsize
    group_major = GROUP_MAJOR and P * panel_bytes > U_BYTES
    if group_major:         # U too large to stay in a core's L2: a group's share of it is not
        per_group = min(per_group, max(1, U_BYTES // panel_bytes))
    groups = -(-P // per_group)
    return dict(H=H, W=W, C=C, P=P, NR=NR, OH=OH, OW=OW, O=O, pool=pool, tw=tw, T=T, tb=tb,
                blocks=blocks, groups=groups, per_group=per_group, group_major=group_major)


def _combine(b, coeffs, vals):
    """sum(c * v) for coefficients in {0, 1, -1} (adds and subtractions only)."""
    acc = None
    for c, v in zip(coeffs, vals):
        if c == 0:
            continue
        if acc is None:
            acc = v if c == 1 else b.fneg(v)
        else:
            acc = b.fadd(acc, v) if c == 1 else b.fsub(acc, v)
    return acc


def _transform(b, mat_l, d, mat_r):
    """mat_l @ d @ mat_r^T for a small matrix ``d`` of values (lists of lists)."""
    rows = [[_combine(b, [r[a] for a in range(len(d))], [d[a][j] for a in range(len(d))])
             for j in range(len(d[0]))] for r in mat_l]
    return [[_combine(b, list(q), row) for q in mat_r] for row in rows]


def winograd_parallel(kc, node, emit):
    """``emit(tc, lo, hi)`` over the units [0, N * blocks * groups), split across the pool."""
    p = plan(node)
    b = kc.b
    units = b.mul(kc.dim(node.inputs[0].type.shape[0]), I64(p["blocks"] * p["groups"]))
    work = b.mul(units, I64(16 * p["tb"] * p["C"] * p["per_group"] * p["NR"]))
    kc.parallel(units, emit, work=work, min_work=MIN_WORK)


def winograd_units(tc, node, out_ptr, x_ptr, up_ptr, lo, hi, epilogue=None, vector_epilogue=None):
    """Units [lo, hi) (see the module docstring); ``epilogue(row, j0, width)`` per
    output pixel (flat row of [N*OH*OW, O]) after its channels are stored, or
    ``vector_epilogue(row, j, vec)`` on each output vector before its store."""
    p = plan(node)
    b = tc.b
    dt = node.inputs[0].type.dtype
    ft = LLTYPE[dt]
    H, W, C, P, NR, OH, OW, O = (p[k] for k in ("H", "W", "C", "P", "NR", "OH", "OW", "O"))
    tw, T, TB, blocks, groups, per_group = (p[k] for k in ("tw", "T", "tb", "blocks", "groups", "per_group"))
    pt, _, pl, _ = node.attrs["pads"]
    vc, vo = vec_width(C), vec_width(O)
    vct, vot = ll.VectorType(ft, vc), ll.VectorType(ft, vo)
    with b.goto_entry_block():
        v_buf = b.bitcast(b.alloca(ll.ArrayType(ft, 16 * TB * C), name="wino_v"), ft.as_pointer())
        m_buf = b.bitcast(b.alloca(ll.ArrayType(ft, 16 * TB * O), name="wino_m"), ft.as_pointer())
        sink = b.alloca(vot, name="wino_sink")        # stores of pixels past the edge
    gemm = _gemm_node(TB, C, node.inputs[1].type, O)
    zero_c = splat(vct, 0.0)

    def clamp(v, hi_):
        v = b.select(b.icmp_signed("<", v, I64(0)), I64(0), v)
        return b.select(b.icmp_signed(">", v, I64(hi_ - 1)), I64(hi_ - 1), v)

    with tc.loop(hi, start=lo, name="u") as u:
        if p["group_major"]:        # (group, image, block)
            per = b.mul(tc.dim(node.inputs[0].type.shape[0]), I64(blocks))
            grp, rest = b.sdiv(u, per), b.srem(u, per)
            img, blk = b.sdiv(rest, I64(blocks)), b.srem(rest, I64(blocks))
        else:                       # (image, block, group)
            img = b.sdiv(u, I64(blocks * groups))
            rest = b.srem(u, I64(blocks * groups))
            blk, grp = b.sdiv(rest, I64(groups)), b.srem(rest, I64(groups))
        t0 = b.mul(blk, I64(TB))
        count = b.sub(I64(T), t0)
        count = b.select(b.icmp_signed("<", count, I64(TB)), count, I64(TB))
        p0 = b.mul(grp, I64(per_group))
        p1 = b.add(p0, I64(per_group))
        p1 = b.select(b.icmp_signed("<", p1, I64(P)), p1, I64(P))
        o0 = b.mul(p0, I64(NR))
        o1 = b.mul(p1, I64(NR))
        o1 = b.select(b.icmp_signed("<", o1, I64(O)), o1, I64(O))
        img_base = b.mul(img, I64(H * W * C))

        # 1. input transform of the block's tiles
        with tc.loop(count, name="ti") as t:
            tile = b.add(t0, t)
            y0 = b.sub(b.mul(b.sdiv(tile, I64(tw)), I64(2)), I64(pt))
            x0 = b.sub(b.mul(b.srem(tile, I64(tw)), I64(2)), I64(pl))
            ys = [b.add(y0, I64(a)) for a in range(4)]
            xs = [b.add(x0, I64(j)) for j in range(4)]
            in_y = [b.and_(b.icmp_signed(">=", y, I64(0)), b.icmp_signed("<", y, I64(H))) for y in ys]
            in_x = [b.and_(b.icmp_signed(">=", x, I64(0)), b.icmp_signed("<", x, I64(W))) for x in xs]
            rows = [b.mul(clamp(y, H), I64(W * C)) for y in ys]
            cols = [b.mul(clamp(x, W), I64(C)) for x in xs]
            with tc.loop(I64(C // vc), name="cv") as cv:
                c = b.mul(cv, I64(vc))
                d = [[b.select(b.and_(in_y[a], in_x[j]),
                               b.load(vector_ptr(b, x_ptr, b.add(img_base, b.add(b.add(rows[a], cols[j]), c)), vct),
                                      align=dt.itemsize), zero_c)
                      for j in range(4)] for a in range(4)]
                v = _transform(b, BT, d, BT)
                for i in range(4):
                    for j in range(4):
                        at = b.add(b.mul(b.add(I64((i * 4 + j) * TB), t), I64(C)), c)
                        b.store(v[i][j], vector_ptr(b, v_buf, at, vct), align=dt.itemsize)

        # 2. the 16 GEMMs over this unit's panels
        with tc.loop(I64(16), name="xi") as xi:
            gemm_packed_into(tc, gemm, b.gep(m_buf, [b.mul(xi, I64(TB * O))], inbounds=True),
                             b.gep(v_buf, [b.mul(xi, I64(TB * C))], inbounds=True),
                             b.gep(up_ptr, [b.mul(xi, I64(P * C * NR))], inbounds=True),
                             panel_range=(p0, p1), row_range=(I64(0), count))

        # 3. output transform (and the tile's maximum when pooled), then the epilogue
        with tc.loop(count, name="to") as t:
            tile = b.add(t0, t)
            ty, tx = b.sdiv(tile, I64(tw)), b.srem(tile, I64(tw))
            if p["pool"]:
                pix = [b.add(b.mul(b.add(b.mul(img, I64(OH)), ty), I64(OW)), tx)]
                inside = [None]
            else:
                pix, inside = [], []
                for a in range(2):
                    for j in range(2):
                        y, x = b.add(b.mul(ty, I64(2)), I64(a)), b.add(b.mul(tx, I64(2)), I64(j))
                        inside.append(b.and_(b.icmp_signed("<", y, I64(OH)), b.icmp_signed("<", x, I64(OW))))
                        pix.append(b.add(b.mul(b.add(b.mul(img, I64(OH)), y), I64(OW)), x))
            n_vec = b.sdiv(b.sub(o1, o0), I64(vo))
            with tc.loop(n_vec, name="ov") as ov:
                o = b.add(o0, b.mul(ov, I64(vo)))
                m = [[b.load(vector_ptr(b, m_buf, b.add(b.mul(b.add(I64((i * 4 + j) * TB), t), I64(O)), o), vot),
                             align=dt.itemsize) for j in range(4)] for i in range(4)]
                y = [v for row in _transform(b, AT, m, AT) for v in row]
                if p["pool"]:
                    y = [nan_max(b, nan_max(b, y[0], y[1]), nan_max(b, y[2], y[3]))]
                for v, q, ok in zip(y, pix, inside):
                    dst = vector_ptr(b, out_ptr, b.add(b.mul(q, I64(O)), o), vot)
                    if ok is not None:
                        dst = b.select(ok, dst, sink)
                    if vector_epilogue is not None:   # a pixel past the edge reads the tile's first
                        v = vector_epilogue(q if ok is None else b.select(ok, q, pix[0]), o, v)
                    b.store(v, dst, align=dt.itemsize)
            if epilogue is not None and vector_epilogue is None:
                for q, ok in zip(pix, inside):
                    if ok is None:
                        epilogue(q, o0, b.sub(o1, o0))
                    else:
                        with b.if_then(ok):
                            epilogue(q, o0, b.sub(o1, o0))


@kernel("conv2d_winograd")
def emit_conv2d_winograd(module, name, node, symbols):
    kc = kernel_context(module, name, node, symbols)

    def emit(tc, lo, hi):
        out_ptr, x_ptr, up_ptr = tc.args
        winograd_units(tc, node, out_ptr, x_ptr, up_ptr, lo, hi)

    winograd_parallel(kc, node, emit)
    return kc.finish()
