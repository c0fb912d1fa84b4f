"""The GEMM microkernel: C[M, n] = A[M, K] @ B, with B packed in panels -- for matmul,
and for convolution as an implicit GEMM (A's rows gathered from the input's windows).

B arrives in the layout of ``pack_panels`` (ceil(n/NR) panels of [K, NR], zero-padded;
the layout pass packs constant weights at compile time). For each panel, rows of A
are taken MR at a time and an MR x NR tile of C is accumulated in vector registers
(MR * NR/VW accumulators, one FMA per A element and B vector per step of k), then
stored once -- C is never re-read inside the k loop, which is what made the plain
i-k-j loop slow. The panel (K x NR floats) stays in cache while every row block
streams past it. Rows left over (M mod MR) run the same kernel one row at a time;
the last, partial panel goes through a small tile on the stack. A fused epilogue
(bias, activation, residual, ...) then rewrites each stored tile while it is in L1.
A convolution's rows come from ``ConvRows`` (kernels_conv.py); its last, partial row
block runs masked: rows past the end store into the stack tile (no branch around
the stores, see ``store_row``).
"""
from __future__ import annotations


import llvmlite.ir as ll

from ...ir import Graph
from ...ir.types import Affine
from ... import target as targets
from .emit import I32, I64, LLTYPE, const, contiguous_strides, lane_splat, ptr, splat, vector_ptr
from . import vmath
from .kernels import kernel, kernel_context
from .kernels_conv import ConvRows

MR = 6        # rows of C per register tile
GROUP = 4     # panels per step for leftover rows (batch 1: a GEMV)
PAIR_ROWS = True  # leftover rows in pairs (False: one at a time, for A/B measurements)


def packed_gemm_node(a_t, panels_t, n: int):
    """A stand-alone matmul_packed node of these operand types, for a kernel that runs
    ``gemm_packed_into`` on operands of its own (a stack buffer, part of a tensor, part
    of a packed kernel): the GEMM reads their shapes and ``n`` off it."""
    g = Graph("gemm")
    return g.op("matmul_packed", g.add_input("a", a_t), g.add_input("bp", panels_t), n=n).producer


def vec_width(n: int) -> int:
    """The widest float32 vector of the target (a power of two) that divides n."""
    lanes = targets.current().f32_lanes
    w = min(lanes, n)
    while n % w:
        w //= 2
    return max(w, 1)


def nan_max(b, x, cur):
    """max_pool2d's maximum of x and cur: NaN wins (numpy's max)."""
    take = b.or_(b.fcmp_unordered("uno", x, x),
                 b.and_(b.fcmp_ordered("ord", cur, cur), b.fcmp_ordered(">", x, cur)))
    return b.select(take, x, cur)


class MatrixRows:
    """A rows of a plain GEMM: A[row, k] of a row-major [rows, K] matrix, or with
    ``transpose`` of a [K, rows] one (then the MR rows of one k are adjacent)."""
    pool = ()     # (ConvRows: max pooling after the conv)
    lda = None    # row stride of a strided view (default: K, contiguous rows)

    def __init__(self, kc, a_ptr, a_t, transpose=False):
        self.kc, self.a_ptr, self.dt, self.transpose = kc, a_ptr, a_t.dtype, transpose
        if transpose:
            self.K, self.rows = kc.affine(Affine.product(a_t.shape[:1])), kc.affine(Affine.product(a_t.shape[1:]))
        else:
            self.K, self.rows = kc.affine(Affine.product(a_t.shape[-1:])), kc.affine(Affine.product(a_t.shape[:-1]))

    def k_loop(self, row_ids, body):
        """Emit the k loop; ``body(k, [A[row, k] for row in row_ids])``."""
        kc, b = self.kc, self.kc.b
        if self.transpose:
            with kc.loop(self.K, name="k") as k:
                base = b.mul(k, self.rows)
                body(k, [kc.load(self.a_ptr, b.add(base, r), self.dt) for r in row_ids])
            return
        bases = [b.mul(r, self.K if self.lda is None else self.lda) for r in row_ids]
        with kc.loop(self.K, name="k") as k:
            body(k, [kc.load(self.a_ptr, b.add(base, k), self.dt) for base in bases])


def gemm_packed_into(kc, node, c_ptr, a_ptr, bp_ptr, tile_epilogue=None, panel_range=None,
                     row_range=None, batch=None, lda=None, ldc=None, c_at=None,
                     rows_epilogue=None, b_k=None, acc_init=None, vector_epilogue=None):
    """Emit the packed GEMM for ``node`` (matmul_packed or conv2d_packed) over the panels
    in ``panel_range`` and the rows in ``row_range`` (i64 values [begin, end); default:
    all). Batched panels: ``batch`` (an i64 value) picks the batch element -- its rows
    of A and C and its panels. ``tile_epilogue(row, j0, width)`` runs after each row of
    a tile is stored (row: flat row index of C; columns [j0, j0+width)). ``lda`` /
    ``ldc``: row strides of a strided A (a plain matmul's) and C (default: contiguous).
    ``c_at(row, g)``: where a full panel's row of C goes instead, g the panel's index
    in its group of up to GROUP panels (an epilogue's scratch -- C is then never in
    memory; every panel must be full). ``rows_epilogue(i, R, j0, G)``: once per tile
    after its R rows i..i+R of G panels from column j0 are stored (R, G Python ints:
    independent work for the out-of-order core). ``b_k`` = (k0, k_total): the panels
    hold k_total rows of which this GEMM reads k0 .. k0 + K (K: A's columns) -- part of
    a packed kernel. ``acc_init(row, p)``: a pointer to NR floats the accumulators of
    panel p's row start from instead of 0 (C += A @ B in one FMA chain per element, k
    in order -- the same sums as one GEMM over the whole depth; full panels only).
    ``vector_epilogue(row, j, vec)``: the epilogue of ``tile_epilogue`` on one vector of
    C's row ``row`` (columns j .. j + VW) while it is in a register, before its store --
    then ``tile_epilogue`` runs only for the partial panel (through the stack tile)."""
    b = kc.b
    m = kc.module
    if c_at is not None:          # C never reaches memory: the epilogue is the caller's
        vector_epilogue = None
    a_t = node.inputs[0].type
    npanels, _, NR = node.inputs[1].type.shape[-3:]
    n = node.attrs["n"]
    if node.op.family == "conv2d_packed":
        src = ConvRows(kc, a_ptr, a_t, node.outputs[0].type, node.attrs)
    else:
        src = MatrixRows(kc, a_ptr, a_t, node.attrs.get("transpose_a", False))
        src.lda = lda
    K = src.K                     # an i64 value: symbolic for x^T @ dy (k runs over the batch)
    panel_stride = b.mul(K, I64(NR))
    if b_k is not None:           # rows k0 .. k0 + K of panels that hold k_total
        bp_ptr = b.gep(bp_ptr, [I64(b_k[0] * NR)], inbounds=True)
        panel_stride = I64(b_k[1] * NR)
    if batch is not None:         # this batch element's panels and rows
        bp_ptr = b.gep(bp_ptr, [b.mul(batch, b.mul(panel_stride, I64(npanels)))], inbounds=True)
        rows_per = kc.affine(Affine.product(a_t.shape[-2:-1]))
        row_range = (b.mul(batch, rows_per), b.mul(b.add(batch, I64(1)), rows_per))
    dt = a_t.dtype
    VW = vec_width(NR)
    nvec = NR // VW
    vt = ll.VectorType(LLTYPE[dt], VW)
    zero_v = splat(vt, 0.0)

    r0, rows = row_range if row_range is not None else (I64(0), src.rows)
    full_rows = b.add(r0, b.mul(b.sdiv(b.sub(rows, r0), I64(MR)), I64(MR)))

    with b.goto_entry_block():
        accs = [[b.alloca(vt, name=f"acc{r}_{v}") for v in range(nvec * GROUP)] for r in range(MR)]
        pmax = ([[b.alloca(vt, name=f"max{r}_{v}") for v in range(nvec)] for r in range(MR)]
                if src.pool else [])
        tile = b.alloca(ll.ArrayType(LLTYPE[dt], MR * NR), name="tile")
    tile_ptr = b.bitcast(tile, ptr(dt))
    ninf_v = splat(vt, float("-inf"))

    masked = isinstance(src, ConvRows)   # see the row loops below

    def micro(i, R, jp, widths):
        """Rows i..i+R of C times panels jp..jp+len(widths): R * len(widths) * nvec
        vector accumulators. ``masked``: rows past the end repeat the last row's
        reads and store nothing."""
        G = len(widths)
        acc = [row[:nvec * G] for row in accs[:R]]
        if acc_init is None:
            for row in acc:
                for a in row:
                    b.store(zero_v, a)
        else:
            assert all(w == NR for w in widths), "acc_init: a partial panel"
            for r, row in enumerate(acc):
                for g in range(G):
                    start = acc_init(b.add(i, I64(r)), b.add(jp, I64(g)))
                    for v in range(nvec):
                        vp = vector_ptr(b, start, I64(v * VW), vt)
                        b.store(b.load(vp, align=dt.itemsize), row[g * nvec + v])
        panel = b.mul(jp, panel_stride)

        def step(k, avals):
            bvec = []
            for g in range(G):
                boff = b.add(panel, b.add(b.mul(I64(g), panel_stride), b.mul(k, I64(NR))))
                bvec += [b.load(vector_ptr(b, bp_ptr, b.add(boff, I64(v * VW)), vt), align=dt.itemsize)
                         for v in range(nvec)]
            for r, a in enumerate(avals):
                sa = lane_splat(b, a, vt)
                for q in range(nvec * G):
                    b.store(vmath.fma(b, m, sa, bvec[q], b.load(acc[r][q])), acc[r][q])

        last = b.sub(rows, I64(1))
        row_ids = [b.add(i, I64(r)) if not masked else smin(b.add(i, I64(r)), last)
                   for r in range(R)]
        if masked and R == MR and src.wants_prefetch():   # the next block's input, once per row block
            with b.if_then(b.icmp_signed("==", jp, pb)):
                src.prefetch(b.add(i, I64(MR)), MR)
        if src.pool:
            pooled_k_loops(acc, row_ids, step)
        else:
            src.k_loop(row_ids, step)
        # the rows that exist: R, or up to the last row in a masked block (row 0 always
        # does); loops over them (not R copies): less IR to print, parse and compile
        nrows = smin(I64(R), b.add(b.sub(last, i), I64(1))) if masked and R > 1 else I64(R)
        # the register epilogue's rows and columns, made once per tile (its operand
        # offsets and row-invariant loads are shared by every vector that uses them); a
        # masked block's rows past the end read the last row's operands (in bounds; the
        # results go to the stack tile)
        erows = [b.add(i, I64(r)) if not (masked and r) else smin(b.add(i, I64(r)), last)
                 for r in range(R)] if vector_epilogue is not None else None
        for g, width in enumerate(widths):
            j0 = b.mul(b.add(jp, I64(g)), I64(NR))
            jvs = ([b.add(j0, I64(v * VW)) for v in range(nvec)]
                   if vector_epilogue is not None and width == NR else None)
            for r in range(R):
                store_row(acc, g, r, i, j0, width, last, erows, jvs)
            if width != NR:       # a partial panel went to the stack tile: its valid columns
                with kc.loop(nrows, name="wr") as r:
                    crow = b.add(b.mul(b.add(i, r), ldc if ldc is not None else I64(n)), j0)
                    with kc.loop(I64(width), name="w") as j:
                        kc.store(kc.load(tile_ptr, b.add(b.mul(r, I64(NR)), j), dt), c_ptr,
                                 b.add(crow, j), dt)
            if tile_epilogue is not None and G == 1 and (vector_epilogue is None or width != NR):
                with kc.loop(nrows, name="er") as r:
                    tile_epilogue(b.add(i, r), j0, I64(width))
        if tile_epilogue is not None and G > 1 and vector_epilogue is None:   # side by side: one run per row
            assert all(w == NR for w in widths)
            with kc.loop(nrows, name="er") as r:
                tile_epilogue(b.add(i, r), b.mul(jp, I64(NR)), I64(G * NR))
        if rows_epilogue is not None:
            rows_epilogue(i, R, b.mul(jp, I64(NR)), G)

    def pooled_k_loops(acc, row_ids, step):
        """One k loop per position of the pool window, the running max in ``pmax``
        (NaN-propagating, like the max of the reference), left in ``acc``."""
        ph, pw = src.pool
        mx = [row[:len(acc[0])] for row in pmax[:len(acc)]]
        for row in mx:
            for a in row:
                b.store(ninf_v, a)
        with kc.loop(I64(ph * pw), name="q") as q:
            src.sub = (b.sdiv(q, I64(pw)), b.srem(q, I64(pw)))
            for row in acc:
                for a in row:
                    b.store(zero_v, a)
            src.k_loop(row_ids, step)
            for arow, mrow in zip(acc, mx):
                for a, m_ in zip(arow, mrow):
                    b.store(nan_max(b, b.load(a), b.load(m_)), m_)
        for arow, mrow in zip(acc, mx):
            for a, m_ in zip(arow, mrow):
                b.store(b.load(m_), a)

    def store_row(acc, g, r, i, j0, width, last, erows=None, jvs=None):
        """Row r of the tile's panel g into C (the partial panel through the stack).
        The vector stores are unconditional: a masked block's rows past the end go to
        the stack tile instead (a store under a branch would let LLVM sink the row's
        whole FMA chain into the branch -- spilling every operand of a k loop that is
        unrolled, as a few-channel conv's is)."""
        crow = b.add(b.mul(b.add(i, I64(r)), ldc if ldc is not None else I64(n)), j0)
        vecs = acc[r][g * nvec:(g + 1) * nvec]
        spare = b.gep(tile_ptr, [I64(r * NR)], inbounds=True)
        if c_at is not None:
            assert width == NR, "c_at: a partial panel"
            dst = c_at(b.add(i, I64(r)), g)
        elif width == NR:
            dst = b.gep(c_ptr, [crow], inbounds=True)
            if masked and r:
                dst = b.select(b.icmp_signed("<=", b.add(i, I64(r)), last), dst, spare)
        else:  # partial last panel: through the stack tile, only the valid columns
            dst = spare
        for v in range(nvec):
            vd = vector_ptr(b, dst, I64(v * VW), vt)
            x = b.load(vecs[v])
            if jvs is not None:
                x = vector_epilogue(erows[r], jvs[v], x)
            b.store(x, vd, align=dt.itemsize)

    last_width = n - (npanels - 1) * NR
    full_panels = npanels if last_width == NR else npanels - 1
    pb, pe = panel_range if panel_range is not None else (I64(0), I64(npanels))

    def smin(x, y):
        return b.select(b.icmp_signed("<", x, y), x, y)

    fe = smin(pe, I64(full_panels))                    # end of the full panels in range
    has_partial = b.and_(b.icmp_signed("==", pe, I64(npanels)), ll.Constant(ll.IntType(1),
                                                                            full_panels < npanels))

    # full MR-row blocks: panel-outer, so a panel stays in cache while the rows stream by.
    # A convolution's last, partial block runs the same code masked (one copy of its
    # tap loops fewer: smaller code, faster compiles); a matmul's leftover rows -- all
    # of them at batch 1 -- take the GEMV path below.
    if masked:
        full_rows = rows
    # Rows go in blocks of MC (A's block stays in L2 while every panel passes over it;
    # without blocking, a tall A -- a conv's windows, a Transformer's tokens -- would
    # stream from memory once per panel).
    mc = row_block_rows(node)
    with kc.loop(full_rows, start=r0, name="rb", step=mc) as rb:
        rb_end = smin(b.add(rb, I64(mc)), full_rows)
        if full_panels:          # (variants that cannot run are not emitted)
            with kc.loop(fe, start=pb, name="jp") as jp:
                with kc.loop(rb_end, start=rb, name="ib", step=MR) as i:
                    micro(i, MR, jp, [NR])
        if full_panels < npanels:
            with b.if_then(has_partial):
                with kc.loop(rb_end, start=rb, name="ibp", step=MR) as i:
                    micro(i, MR, I64(full_panels), [last_width])

    if masked:
        return
    # leftover rows (all rows at batch 1): GROUP panels at a time, for enough
    # independent accumulators to hide the FMA latency. Two rows share each load of B
    # (a matrix-vector product streams B from L2 or memory with FMA units to spare):
    # a batch of 2..5 rows costs about one pass over B per pair, not one per row.
    span = b.sub(fe, pb)
    grouped_end = b.add(pb, b.mul(b.sdiv(span, I64(GROUP)), I64(GROUP)))
    # two rows at a time over the grouped panels (the bulk of the work) while two are
    # left; a last odd row and the few panels past the groups go row by row (the pair
    # variants of those would only add code to compile)
    paired = PAIR_ROWS and full_panels >= GROUP
    if paired:
        pairs_end = b.add(full_rows, b.mul(b.sdiv(b.sub(rows, full_rows), I64(2)), I64(2)))
        with kc.loop(pairs_end, start=full_rows, name="ir2", step=2) as i:
            with kc.loop(grouped_end, start=pb, name="jg2", step=GROUP) as jp:
                micro(i, 2, jp, [NR] * GROUP)
    with kc.loop(rows, start=full_rows, name="ir") as i:
        if paired:                     # the odd row's grouped panels
            with b.if_then(b.icmp_signed(">=", i, pairs_end)):
                with kc.loop(grouped_end, start=pb, name="jg", step=GROUP) as jp:
                    micro(i, 1, jp, [NR] * GROUP)
        elif full_panels >= GROUP:
            with kc.loop(grouped_end, start=pb, name="jg", step=GROUP) as jp:
                micro(i, 1, jp, [NR] * GROUP)
        if full_panels:
            with kc.loop(fe, start=grouped_end, name="j1") as jp:
                micro(i, 1, jp, [NR])
        if full_panels < npanels:
            with b.if_then(has_partial):
                micro(i, 1, I64(full_panels), [last_width])


ROW_BLOCK = MR   # rows per work unit when a GEMM is split by rows (the pool claims chunks)
#: multiply-adds from which a GEMM split by panels goes to the thread pool: a batch-1
#: dense layer (a GEMV) streams its weights, so two cores halve even a small one
GEMM_MIN_WORK = 1 << 16
#: the same for a GEMM split by rows (a conv with few output channels): from ~5 us of
#: work (a batch-1 stem conv or 1x1 projection gains ~1.6x from a second core)
ROW_SPLIT_MIN_WORK = 1 << 18
#: a GEMM splits by rows when C has this many times more rows than columns: each
#: thread then reads its share of A and all of B (rather than all of A and its share
#: of B) -- a tall, narrow GEMM (a 1x1 conv on a large image, an FFN at batch 256)
#: would read A from memory once per thread split by panels
ROWS_OVER_COLUMNS = 2
A_BLOCK_BYTES = 256 * 1024   # A's row block: well inside a core's L2


def row_block_rows(node) -> int:
    """MC: rows of A per cache block, a multiple of MR -- A_BLOCK_BYTES of A, at
    least 8 MR rows (then B panels are re-read at most once per 48 rows), at most 4096."""
    K = node.inputs[1].type.shape[-2]
    k = K if isinstance(K, int) else 512          # a symbolic depth (x^T @ dy): a guess
    itemsize = node.inputs[0].type.dtype.itemsize
    rows = A_BLOCK_BYTES // max(1, k * itemsize)
    return max(8 * MR, min(4096, rows // MR * MR))


def gemm_packed_parallel(kc, node, emit):
    """Split a packed GEMM across the thread pool: by panels when there are enough of
    them, else by blocks of rows (a conv or dense layer with few output channels).
    ``emit(tc, ranges)`` emits the GEMM (and whatever goes with it) for
    ``gemm_packed_into(..., **ranges)`` into the task context ``tc``. Work estimate:
    rows * K * n multiply-adds."""
    *batch, npanels, K, NR = node.inputs[1].type.shape
    b = kc.b
    rows = kc.affine(Affine.product(node.outputs[0].type.shape[:-1]))
    work = b.mul(rows, b.mul(kc.affine(Affine.product((K,))), I64(node.attrs["n"])))
    if batch:                  # batched panels: one unit per batch element
        def by_batch(tc, lo, hi):
            with tc.loop(hi, start=lo, name="bt") as bt:
                emit(tc, {"batch": bt})
        kc.parallel(kc.affine(Affine.product(tuple(batch))), by_batch, work=work)
        return
    row_blocks = b.sdiv(b.add(rows, I64(ROW_BLOCK - 1)), I64(ROW_BLOCK))
    if npanels < 4:
        by_rows = ll.Constant(ll.IntType(1), 1)
    else:     # chosen per call: rows (batch size) are known only at run time
        by_rows = b.icmp_signed(">=", rows, I64(ROWS_OVER_COLUMNS * node.attrs["n"]))
    units = b.select(by_rows, row_blocks, I64(npanels))
    # one threshold for both splits: a row split's work counts 1/4 (ROW_SPLIT_MIN_WORK)
    scale = ROW_SPLIT_MIN_WORK // GEMM_MIN_WORK
    work = b.select(by_rows, b.sdiv(work, I64(scale)), work)

    def split(tc, lo, hi):
        tb = tc.b
        t_rows = tc.affine(Affine.product(node.outputs[0].type.shape[:-1]))
        t_by_rows = (tb.icmp_signed(">=", t_rows, I64(ROWS_OVER_COLUMNS * node.attrs["n"]))
                     if npanels >= 4 else ll.Constant(ll.IntType(1), 1))
        end = tb.mul(hi, I64(ROW_BLOCK))
        end = tb.select(tb.icmp_signed("<", end, t_rows), end, t_rows)
        r0 = tb.select(t_by_rows, tb.mul(lo, I64(ROW_BLOCK)), I64(0))
        r1 = tb.select(t_by_rows, end, t_rows)
        p0 = tb.select(t_by_rows, I64(0), lo)
        p1 = tb.select(t_by_rows, I64(npanels), hi)
        emit(tc, {"row_range": (r0, r1), "panel_range": (p0, p1)})

    kc.parallel(units, split, work=work, min_work=GEMM_MIN_WORK)


@kernel("conv2d_packed")
@kernel("matmul_packed")
def emit_matmul_packed(module, name, node, symbols):
    kc = kernel_context(module, name, node, symbols)

    def emit(tc, ranges):
        c_ptr, a_ptr, bp_ptr = tc.args
        gemm_packed_into(tc, node, c_ptr, a_ptr, bp_ptr, **ranges)

    gemm_packed_parallel(kc, node, emit)
    return kc.finish()


KB = 16      # panel rows per block when packing a transpose


#: run-time packs of at least this many elements go to the thread pool (a strided,
#: transposing copy: an attention's k^T at batch 1, 16k elements, takes ~9 us serially)
PACK_MIN_WORK = 1 << 14
#: whole panels by vectors and transposes by register blocks (False: element by element,
#: for A/B measurements)
VECTOR_PACK = True
#: a 2-D source with contiguous panel rows is packed in its row order, PACK_ROWS rows
#: per work unit (False: a panel per work unit)
ROW_ORDER = True
PACK_ROWS = 8


def transpose_square(b, rows: list) -> list:
    """The S x S transpose of S vectors of S lanes (S a power of two), in log2(S)
    butterfly stages of two-source shuffles (vpermt2ps / vunpck on x86): stage ``h``
    swaps the off-diagonal h x h blocks of every 2h x 2h block."""
    S = len(rows)
    rows = list(rows)
    h = S // 2
    while h:
        lo = ll.Constant(ll.VectorType(I32, S), [c if not c & h else S + c - h for c in range(S)])
        hi = ll.Constant(ll.VectorType(I32, S), [c + h if not c & h else S + c for c in range(S)])
        for i in range(S):
            if not i & h:
                a, c = rows[i], rows[i + h]
                rows[i], rows[i + h] = b.shuffle_vector(a, c, lo), b.shuffle_vector(a, c, hi)
        h //= 2
    return rows


def _pack_by_rows(kc, K, npanels, NR, P, strides, dt):
    """A 2-D source whose panel rows are contiguous (a weight, an activation), packed in
    its own row order: a work unit is PACK_ROWS source rows, each copied to every panel
    by vectors (the last, partial panel element by element, zero-padded). The source is
    read front to back, which the hardware prefetcher follows; a panel at a time read
    it down a column of 128-byte pieces, one page apart for a 512-wide matrix."""
    Kv = kc.affine(Affine.product((K,)))
    units = kc.b.sdiv(kc.b.add(Kv, I64(PACK_ROWS - 1)), I64(PACK_ROWS))
    full = P // NR
    vt = ll.VectorType(LLTYPE[dt], NR)
    zero = const(dt, 0.0)

    def task(tc, lo, hi):
        b = tc.b
        out_ptr, x_ptr = tc.args
        Kt = tc.affine(Affine.product((K,)))
        sK = tc.affine(strides[-2])
        stop = b.mul(hi, I64(PACK_ROWS))
        stop = b.select(b.icmp_signed("<", stop, Kt), stop, Kt)
        with tc.loop(stop, start=b.mul(lo, I64(PACK_ROWS)), name="k") as k:
            row = b.mul(k, sK)
            with tc.loop(I64(full), name="p") as p:
                src = b.add(row, b.mul(p, I64(NR)))
                dst = b.mul(b.add(b.mul(p, Kt), k), I64(NR))
                v = b.load(vector_ptr(b, x_ptr, src, vt), align=dt.itemsize)
                b.store(v, vector_ptr(b, out_ptr, dst, vt), align=dt.itemsize)
            if full < npanels:           # the partial panel: its P % NR columns, then zeros
                dst0 = b.mul(b.add(b.mul(I64(full), Kt), k), I64(NR))
                with tc.loop(I64(P - full * NR), name="j") as j:
                    tc.store(tc.load(x_ptr, b.add(row, b.add(I64(full * NR), j)), dt), out_ptr,
                             b.add(dst0, j), dt)
                with tc.loop(I64(NR), start=I64(P - full * NR), name="jz") as j:
                    tc.store(zero, out_ptr, b.add(dst0, j), dt)

    kc.parallel(units, task, work=kc.b.mul(Kv, I64(npanels * NR)), min_work=PACK_MIN_WORK)
    return kc.finish()


@kernel("pack_panels")
def emit_pack_panels(module, name, node, symbols):
    """Run-time packing (constant weights are packed at compile time instead): one work
    unit per (batch element, panel), split across the thread pool. The source is read
    through ``perm`` (any strides). A full panel copies vectors: NR contiguous floats
    per panel row when P is the source's contiguous axis; when K is (a transpose, e.g.
    ``dy @ W^T``), S x S blocks (S = min(NR, KB)) loaded as S source runs and
    transposed in registers -- a backward pass's W^T was packed element by element at
    ~3 GB/s. The last, partial panel (columns past P store 0), K's tail past the last
    whole KB block and other strides go element by element."""
    kc = kernel_context(module, name, node, symbols)
    x_t = node.inputs[0].type
    *batch, npanels, K, NR = node.outputs[0].type.shape
    perm = node.attrs["perm"] or tuple(range(x_t.rank))
    src_strides = contiguous_strides(x_t.shape)
    strides = [src_strides[i] for i in perm]              # of the logical [..., K, P]
    P = x_t.shape[perm[-1]]
    k_contiguous = strides[-2] == Affine(1)
    p_contiguous = strides[-1] == Affine(1)
    dt = x_t.dtype
    if ROW_ORDER and VECTOR_PACK and p_contiguous and not batch:
        return _pack_by_rows(kc, K, npanels, NR, P, strides, dt)
    zero = const(dt, 0.0)
    S = min(NR, KB)
    square = VECTOR_PACK and k_contiguous and NR % S == 0 and KB % S == 0 and S & (S - 1) == 0 and S > 1
    units = kc.b.mul(kc.affine(Affine.product(tuple(batch))), I64(npanels))

    def task(tc, lo, hi):
        b = tc.b
        out_ptr, x_ptr = tc.args
        Kv = tc.affine(Affine.product((K,)))
        sK, sP = tc.affine(strides[-2]), tc.affine(strides[-1])

        def vec_at(base_ptr, index, lanes):
            return vector_ptr(b, base_ptr, index, ll.VectorType(LLTYPE[dt], lanes))

        with tc.loop(hi, start=lo, name="u") as u:
            p = b.srem(u, I64(npanels))
            rest, boff = b.sdiv(u, I64(npanels)), I64(0)
            for d in reversed(range(len(batch))):       # the batch element's source offset
                size = tc.affine(Affine.product((batch[d],)))
                boff = b.add(boff, b.mul(b.srem(rest, size), tc.affine(strides[d])))
                rest = b.sdiv(rest, size)
            base = b.mul(u, Kv)
            col0 = b.mul(p, I64(NR))

            def element(k, j):
                col = b.add(col0, j)
                inside = b.icmp_signed("<", col, I64(P))
                safe = b.select(inside, col, I64(P - 1))
                src = b.add(boff, b.add(b.mul(k, sK), b.mul(safe, sP)))
                dst = b.add(b.mul(b.add(base, k), I64(NR)), j)
                tc.store(b.select(inside, tc.load(x_ptr, src, dt), zero), out_ptr, dst, dt)

            def by_element(k_from):
                if k_contiguous:
                    with tc.loop(Kv, start=k_from, name="kb", step=KB) as kb:
                        left = b.sub(Kv, kb)
                        stop = b.select(b.icmp_signed("<", left, I64(KB)), left, I64(KB))
                        with tc.loop(I64(NR), name="j") as j:
                            with tc.loop(stop, name="kk") as kk:
                                element(b.add(kb, kk), j)
                else:             # contiguous writes of a panel row
                    with tc.loop(Kv, start=k_from, name="k") as k:
                        with tc.loop(I64(NR), name="j") as j:
                            element(k, j)

            def by_vector():
                if p_contiguous:                  # a panel row is NR contiguous floats
                    with tc.loop(Kv, name="k") as k:
                        src = b.add(boff, b.add(b.mul(k, sK), col0))
                        v = b.load(vec_at(x_ptr, src, NR), align=dt.itemsize)
                        b.store(v, vec_at(out_ptr, b.mul(b.add(base, k), I64(NR)), NR),
                                align=dt.itemsize)
                    return
                whole = b.mul(b.sdiv(Kv, I64(KB)), I64(KB))
                with tc.loop(whole, name="kb", step=KB) as kb:
                    for j0 in range(0, NR, S):
                        for k0 in range(0, KB, S):
                            k = b.add(kb, I64(k0))
                            rows = [b.load(vec_at(x_ptr, b.add(boff, b.add(
                                b.mul(b.add(col0, I64(j0 + i)), sP), k)), S), align=dt.itemsize)
                                for i in range(S)]
                            for r, v in enumerate(transpose_square(b, rows)):
                                dst = b.add(b.mul(b.add(base, b.add(k, I64(r))), I64(NR)), I64(j0))
                                b.store(v, vec_at(out_ptr, dst, S), align=dt.itemsize)
                by_element(whole)                 # K's tail

            if not ((VECTOR_PACK and p_contiguous) or square):
                by_element(I64(0))
            else:
                full = b.icmp_signed("<=", b.add(col0, I64(NR)), I64(P))
                with b.if_else(full) as (vector, partial):
                    with vector:
                        by_vector()
                    with partial:
                        by_element(I64(0))

    kc.parallel(units, task, work=kc.b.mul(kc.affine(Affine.product((K,))), kc.b.mul(units, I64(NR))),
                min_work=PACK_MIN_WORK)
    return kc.finish()
