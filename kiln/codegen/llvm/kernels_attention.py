"""The fused attention kernels: softmax(q @ K) @ V a block of query rows at a time.

A block's scores -- at most SCORE_FLOATS floats, in a stack buffer of the task -- are
computed by the packed GEMM (kernels_gemm.gemm_packed_into, the same microkernel as
every matmul), masked if asked, turned into probabilities row by row in place (the
softmax kernel's slice code), and multiplied by V's panels straight into the output.
The scores never leave the core's caches; the unfused chain writes them, reads and
writes them again (softmax), and reads them a third time.

- attention_packed: K^T and V come packed (pack_panels); a work unit is (batch
  element, block of query rows).
- attention: q, k, v in the projections' [B, tokens, heads, depth] layout; a work unit
  is (batch element, head), whose keys (transposed, times the scale) and values the
  task packs into its own buffers (at most the layout pass's MAX_HEAD_FLOATS each);
  q is read and the output written in place (row strides H*D and H*Dv).

Units are split across the thread pool. Stack use per task stays under ~200 KB (the
AOT library runs these on its caller's thread too).
"""
from __future__ import annotations

import llvmlite.ir as ll

from ... import target as targets
from ...ir import DType, TensorType
from ...ir.types import Affine
from .emit import I64, LLTYPE, splat, vector_ptr
from .kernels import _softmax_slice, kernel, kernel_context
from .kernels_gemm import MR, gemm_packed_into, packed_gemm_node, transpose_square

ROWS = 8 * MR             # query rows per block: 48 x 128 keys = 24 KB of scores
SCORE_FLOATS = 1 << 14    # fewer rows per block for long key sequences (64 KB at most)
MIN_WORK = 1 << 16


def _rows(M: int, keys: int) -> int:
    return min(M, max(MR, min(ROWS, SCORE_FLOATS // keys) // MR * MR))


def _attend(tc, scores_node, out_node, s_ptr, q, kp, vp, out, count, keys, dt,
            lda=None, ldc=None, mask=None):
    """One block of ``count`` query rows: scores = q @ K (into s_ptr), ``mask(r, j)``
    hook per score (a value to keep or replace it), softmax per row, out = p @ V.
    (Scaling out's rows by 1 / sum instead of the probabilities -- Dv columns per row
    instead of the keys -- measured neutral, so the softmax is the softmax kernel's.)"""
    tb = tc.b
    gemm_packed_into(tc, scores_node, s_ptr, q, kp, row_range=(I64(0), count), lda=lda)
    if mask is not None:
        with tc.loop(count, name="mr") as r:
            with tc.loop(I64(keys), name="mj") as j:
                at = tb.add(tb.mul(r, I64(keys)), j)
                tc.store(mask(r, j, tc.load(s_ptr, at, dt)), s_ptr, at, dt)
    with tc.loop(count, name="sr") as r:
        _softmax_slice(tc, tc.module, s_ptr, s_ptr, tb.mul(r, I64(keys)), I64(keys), I64(1), dt)
    gemm_packed_into(tc, out_node, out, s_ptr, vp, row_range=(I64(0), count), ldc=ldc)


def _gemm_node(rows: int, k: int, panels: TensorType, n: int):
    """The matmul_packed node of one batch element's shapes: [rows, k] @ panels."""
    return packed_gemm_node(TensorType((rows, k), panels.dtype),
                            TensorType(panels.shape[-3:], panels.dtype), n)


@kernel("attention_packed")
def emit_attention_packed(module, name, node, symbols):
    kc = kernel_context(module, name, node, symbols)
    q_t, kp_t, vp_t = (v.type for v in node.inputs)
    *batch, M, D = q_t.shape
    n_s, n = node.attrs["n_s"], node.attrs["n"]
    dt = q_t.dtype
    rows = _rows(M, n_s)
    scores_node = _gemm_node(rows, D, kp_t, n_s)
    out_node = _gemm_node(rows, n_s, vp_t, n)
    kp_size = Affine.product(kp_t.shape[-3:])
    vp_size = Affine.product(vp_t.shape[-3:])
    blocks = -(-M // rows)
    b = kc.b
    units = b.mul(kc.affine(Affine.product(tuple(batch))), I64(blocks))

    def task(tc, lo, hi):
        tb = tc.b
        out_ptr, q_ptr, kp_ptr, vp_ptr = tc.args
        with tb.goto_entry_block():
            scratch = tb.alloca(ll.ArrayType(LLTYPE[dt], rows * n_s), name="scores")
        s_ptr = tb.bitcast(scratch, LLTYPE[dt].as_pointer())
        with tc.loop(hi, start=lo, name="u") as u:
            bt, blk = tb.sdiv(u, I64(blocks)), tb.srem(u, I64(blocks))
            r0 = tb.add(tb.mul(bt, I64(M)), tb.mul(blk, I64(rows)))      # first row (all batches)
            count = tb.sub(I64(M), tb.mul(blk, I64(rows)))
            count = tb.select(tb.icmp_signed("<", count, I64(rows)), count, I64(rows))
            q = tb.gep(q_ptr, [tb.mul(r0, I64(D))], inbounds=True)
            kp = tb.gep(kp_ptr, [tb.mul(bt, tc.affine(kp_size))], inbounds=True)
            vp = tb.gep(vp_ptr, [tb.mul(bt, tc.affine(vp_size))], inbounds=True)
            out = tb.gep(out_ptr, [tb.mul(r0, I64(n))], inbounds=True)
            _attend(tc, scores_node, out_node, s_ptr, q, kp, vp, out, count, n_s, dt)

    kc.parallel(units, task, work=b.mul(units, I64(rows * n_s * (D + n))), min_work=MIN_WORK)
    return kc.finish()


@kernel("attention")
def emit_attention(module, name, node, symbols):
    """One work unit per (batch element, head): its keys (transposed, times the scale)
    and values are packed into panels in the task's own buffers, then each block of
    query rows -- read in place, a row every H*D floats -- takes the same three steps as
    attention_packed, its output rows stored in place (a row every H*Dv floats)."""
    kc = kernel_context(module, name, node, symbols)
    q_t, k_t, v_t = (v.type for v in node.inputs[:3])
    _, M, H, D = q_t.shape
    S, Dv = k_t.shape[1], v_t.shape[3]
    dt = q_t.dtype
    t = LLTYPE[dt]
    nr = 2 * targets.current().f32_lanes          # the layout pass's panel width
    npk, npv = -(-S // nr), -(-Dv // nr)
    rows = _rows(M, S)
    blocks = -(-M // rows)
    scores_node = _gemm_node(rows, D, TensorType((npk, D, nr), dt), S)
    out_node = _gemm_node(rows, S, TensorType((npv, S, nr), dt), Dv)
    scale = ll.Constant(t, node.attrs["scale"])
    masked = ll.Constant(t, node.attrs["masked_value"])
    mask_strides = _mask_strides(node.inputs[3].type) if len(node.inputs) > 3 else None
    b = kc.b
    units = b.mul(kc.dim(q_t.shape[0]), I64(H))

    def task(tc, lo, hi):
        tb = tc.b
        out_ptr, q_ptr, k_ptr, v_ptr, *mask_ptr = tc.args
        with tb.goto_entry_block():
            bufs = [tb.bitcast(tb.alloca(ll.ArrayType(t, size), name=nm), t.as_pointer())
                    for nm, size in (("keys", npk * D * nr), ("values", npv * S * nr), ("scores", rows * S))]
        kbuf, vbuf, s_ptr = bufs
        zero = ll.Constant(t, 0.0)
        # the padding of the last panels (read by the microkernel, multiplied into
        # columns nobody stores) is zeroed once per task
        with tc.loop(I64(D), name="kz") as d:
            with tc.loop(I64(npk * nr), start=I64(S), name="kzj") as j:
                p, jj = tb.sdiv(j, I64(nr)), tb.srem(j, I64(nr))
                tc.store(zero, kbuf, tb.add(tb.mul(tb.add(tb.mul(p, I64(D)), d), I64(nr)), jj), dt)
        with tc.loop(I64(S), name="vz") as s:
            with tc.loop(I64(npv * nr), start=I64(Dv), name="vzc") as c:
                p, cc = tb.sdiv(c, I64(nr)), tb.srem(c, I64(nr))
                tc.store(zero, vbuf, tb.add(tb.mul(tb.add(tb.mul(p, I64(S)), s), I64(nr)), cc), dt)
        with tc.loop(hi, start=lo, name="u") as u:
            bt, h = tb.sdiv(u, I64(H)), tb.srem(u, I64(H))
            _pack_keys(tc, kbuf, k_ptr, tb.add(tb.mul(bt, I64(S * H)), h), S, H, D, nr, scale, dt)
            with tc.loop(I64(S), name="vs") as s:          # values: rows of the panels
                row = tb.mul(tb.add(tb.mul(tb.add(tb.mul(bt, I64(S)), s), I64(H)), h), I64(Dv))
                for p in range(npv):
                    width = min(nr, Dv - p * nr)
                    dst = tb.mul(tb.add(I64(p * S), s), I64(nr))
                    with tc.loop(I64(width), name="vc") as c:
                        tc.store(tc.load(v_ptr, tb.add(row, tb.add(I64(p * nr), c)), dt), vbuf,
                                 tb.add(dst, c), dt)
            with tc.loop(I64(blocks), name="blk") as blk:
                r0 = tb.mul(blk, I64(rows))
                count = tb.sub(I64(M), r0)
                count = tb.select(tb.icmp_signed("<", count, I64(rows)), count, I64(rows))
                first = tb.add(tb.mul(tb.add(tb.mul(bt, I64(M)), r0), I64(H)), h)   # (bt, r0, h)
                q = tb.gep(q_ptr, [tb.mul(first, I64(D))], inbounds=True)
                out = tb.gep(out_ptr, [tb.mul(first, I64(Dv))], inbounds=True)
                def masker(r, j, score):           # masked scores -> masked_value
                    sb, sh, sm, ss = mask_strides
                    at = [tb.mul(bt, I64(sb)), tb.mul(h, I64(sh)), tb.mul(tb.add(r0, r), I64(sm)),
                          tb.mul(j, I64(ss))]
                    keep = tc.load(mask_ptr[0], tb.add(tb.add(at[0], at[1]), tb.add(at[2], at[3])), DType.bool)
                    return tb.select(tb.icmp_unsigned("!=", keep, ll.Constant(keep.type, 0)), score, masked)

                _attend(tc, scores_node, out_node, s_ptr, q, kbuf, vbuf, out, count, S, dt,
                        lda=I64(H * D), ldc=I64(H * Dv), mask=masker if mask_strides is not None else None)

    kc.parallel(units, task, work=b.mul(units, I64(M * S * (D + Dv))), min_work=MIN_WORK)
    return kc.finish()


def _pack_keys(tc, kbuf, k_ptr, first, S, H, D, nr, scale, dt):
    """kbuf = keys^T * scale in panels [S/nr, D, nr]; key s of the head is the row
    ``first + s*H`` (of D floats) of k. T x T blocks (T: the target's float lanes) go
    through registers: T rows loaded as vectors, transposed by shuffles, stored as T
    panel rows -- element by element, the packing's strided stores took ~2.5 us of a
    [128 x 32] head's ~30 (scatters on AVX-512). Keys and depths past the last whole
    block go element by element."""
    tb = tc.b
    t = LLTYPE[dt]
    T = targets.current().f32_lanes if dt is DType.f32 else 1
    T = T if T > 1 and nr % T == 0 and S >= T and D >= T else 1
    sb, db = (S // T * T, D // T * T) if T > 1 else (0, 0)
    vt = ll.VectorType(t, T)
    vscale = splat(vt, scale.constant) if T > 1 else None

    def row(s):
        return tb.mul(tb.add(first, tb.mul(s, I64(H))), I64(D))

    def dst(s, d):
        return tb.add(tb.add(tb.mul(tb.sdiv(s, I64(nr)), I64(D * nr)), tb.srem(s, I64(nr))), tb.mul(d, I64(nr)))

    def vec(base, index):
        return vector_ptr(tb, base, index, vt)

    def one(s, d):
        tc.store(tb.fmul(tc.load(k_ptr, tb.add(row(s), d), dt), scale), kbuf, dst(s, d), dt)

    if T > 1:
        with tc.loop(I64(sb), name="ksb", step=T) as s0:
            with tc.loop(I64(db), name="kdb", step=T) as d0:
                rows = [tb.fmul(tb.load(vec(k_ptr, tb.add(row(tb.add(s0, I64(i))), d0)), align=dt.itemsize),
                            vscale) for i in range(T)]
                for i, v in enumerate(transpose_square(tb, rows)):
                    tb.store(v, vec(kbuf, dst(s0, tb.add(d0, I64(i)))), align=dt.itemsize)
            with tc.loop(I64(T), name="kst") as i:           # depths past the last block
                with tc.loop(I64(D), start=I64(db), name="kdt") as d:
                    one(tb.add(s0, i), d)
    with tc.loop(I64(S), start=I64(sb), name="ks") as s:    # keys past the last block
        with tc.loop(I64(D), name="kd") as d:
            one(s, d)


def _mask_strides(mask_t) -> tuple:
    """Element strides of a mask read as the scores [B, H, M, S] (broadcast: stride 0)."""
    shape = (1,) * (4 - mask_t.rank) + tuple(mask_t.shape)
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(0 if d == 1 else acc)
        acc = acc * d if isinstance(d, int) else acc
    return tuple(reversed(strides))
