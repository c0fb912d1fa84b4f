"""Register-tiled GEMM kernels for CUDA: ``matmul`` and, as implicit GEMMs over the
NHWC image (no im2col copy, no padded copy), ``conv2d``, ``conv2d_transpose`` and
``conv2d_backprop_kernel``.

One generator (``gemm``) writes every kernel. A block computes a ``bm`` x ``bn`` tile
of C = A @ B (``LaunchConfig``); its (bn/tn) x (bm/tm) threads each hold ``tm`` x
``tn`` accumulators in a local array (registers: every index is a constant). For each
``bk``-wide slice of the reduction, all threads stage an A tile ``sa_[bk][bm+pad]``
(k-major: A transposed as it is stored) and a B tile ``sb_[bk][bn+pad]`` in shared
memory, then every thread reads ``tm`` A values and ``tn`` B values per k step into
registers and does tm*tn multiply-adds, while the next slice's global loads (issued
into registers before the math) are in flight. Thread (tx, ty) owns rows ``ty + i*(bm/tm)``
and columns ``tx + j*(bn/tn)``: a warp's B reads are consecutive words and its A
reads a broadcast (no bank conflicts), and its stores of C are coalesced.

Tile loads are coalesced: element e of a tile (e = thread + slot*threads) walks the
operand's contiguous axis -- k for a row-major A, m/n otherwise -- so neighbouring
threads read neighbouring addresses; the shared row pad is chosen so that a warp's
(transposing) stores hit distinct banks. Out-of-range elements (M, N, K not multiples
of the tile; a convolution's padding taps) load as 0 by a bounds check; stores are
bounds-checked. Per-slot address arithmetic that does not depend on k (a conv row's
image position) is hoisted out of the k loop.

Each accumulator goes through the fusion group's elementwise epilogue (bias,
activation, residual add, ...: ``source.dag``) and is stored once. Grid z runs over
matmul batch dims (broadcast batch strides), over conv groups, over the output phases
of a strided conv2d_transpose (one dense GEMM per phase: no tap multiplies a
structural zero), and, for the kernel gradient (a GEMM whose reduction is the whole
batch and image), over split-K chunks that add their partial tiles atomically into
the zeroed result. ``fit_tile`` reshapes the block tile (same threads) for GEMMs with
few columns (128 x 32 for a 16-channel conv) or few rows.

Depthwise conv2d and its kernel gradient (one input channel per group: a GEMM one
column wide) stay *point* kernels (points.py).
"""
from __future__ import annotations

from ...ir.types import Affine
from ..llvm.emit import broadcast_strides
from .scalar import literal
from .source import Src, aff, dag, numel, offset, unflatten


def _ceil(a: str, b: int) -> str:
    return f"(({a}) + {b - 1}) // {b}"


def _pad(width: int, along_k: bool, bk: int, nt: int) -> int:
    """Row pad of a [bk][width] shared tile so that one warp's stores of slot 0 spread
    over the 32 banks (tie: the smallest pad)."""
    best = None
    for pad in range(32):
        banks = {}
        for t in range(min(32, nt)):
            lk, lmn = (t % bk, t // bk) if along_k else (t // width, t % width)
            b = (lk * (width + pad) + lmn) % 32
            banks[b] = banks.get(b, 0) + 1
        worst = max(banks.values())
        if best is None or worst < best[0]:
            best = (worst, pad)
    return best[1]


class Operand:
    """How one operand's tiles are loaded. ``along_k``: its contiguous axis is the
    reduction (else the tile's rows/columns). ``prep(src, s, mn)``: lines before the k
    loop for load slot ``s`` whose global row/column is ``mn``; ``load(src, s, mn, k,
    fresh)``: lines setting ``v_`` to the element (0 outside the operand); ``fresh`` is
    False when slot ``s`` has the same k as the slot before it (along k, every slot of a
    thread does), so that k-only arithmetic already done can be reused."""

    def __init__(self, along_k, load, prep=None):
        self.along_k, self.load, self.prep = along_k, load, prep


def _stage(src, op: Operand, tile: str, width: int, base: str, cfg, nt: int):
    """Slot-wise index names of loading one [bk][width] tile (returns the slot list)."""
    slots = []
    for s in range((width * cfg.bk) // nt):
        e = f"(t_ + {s * nt})" if s else "t_"
        lk, lmn = (f"{e} % {cfg.bk}", f"{e} // {cfg.bk}") if op.along_k else \
            (f"{e} // {width}", f"{e} % {width}")
        if s and op.along_k:          # nt is a multiple of bk: every slot has k = t_ % bk
            lk = f"{tile}k0_"
        src(f"{tile}k{s}_ = {lk}")
        src(f"{tile}l{s}_ = {lmn}")
        src(f"{tile}g{s}_ = {base} + {tile}l{s}_")
        if op.prep is not None:
            op.prep(src, s, f"{tile}g{s}_")
        slots.append(s)
    return slots


def gemm(name, sig, cfg, *, dt, M, N, K, a: Operand, b: Operand, row, store, zsetup=None,
         split=None, zero=None, early_exit=False):
    """(source, block) of the kernel computing C[M, N] = A[M, K] @ B[K, N] (sizes: source
    expressions over the symbols). ``sig``: (operand argument names, symbol argument
    names). ``row(src)``: lines per output row ``gm_`` (valid); ``store(src,
    v)``: the store of accumulator ``v`` at (``gm_``, ``gn_``). ``zsetup(src)``: lines
    reading ``z_`` (the grid z index, split chunk removed), before the sizes (which may
    use what it defines; then ``early_exit`` ends the blocks past M). ``split``: (number
    of groups on z, launch expression of the split count): K is cut into chunks over
    grid z, a multiple of bk each.
    ``zero``: the total of out0, zeroed by a first kernel (split-K adds atomically)."""
    BM, BN, BK, TM, TN = cfg.bm, cfg.bn, cfg.bk, cfg.tm, cfg.tn
    RM, RN = BM // TM, BN // TN
    nt = RM * RN
    npn = dt.np.name
    pa, pb = _pad(BM, a.along_k, BK, nt), _pad(BN, b.along_k, BK, nt)
    src = Src()
    if zero is not None:
        src("@cuda.jit")          # launched with this kernel's 2-D block: a flat thread index
        src(f"def {name}_zero({', '.join(['out0', *sig[1]])}):")
        src(f"    total_ = {zero}")
        src(f"    i_ = cuda.blockIdx.x * {nt} + cuda.threadIdx.y * {RN} + cuda.threadIdx.x")
        src("    while i_ < total_:")
        src(f"        out0[i_] = {literal(0, dt)}")
        src(f"        i_ += cuda.gridDim.x * {nt}")
        src("")
        src("")
    src("@cuda.jit")
    src(f"def {name}({', '.join([*sig[0], *sig[1]])}):")
    src.indent()
    src(f"sa_ = cuda.shared.array(({BK}, {BM + pa}), {npn})")
    src(f"sb_ = cuda.shared.array(({BK}, {BN + pb}), {npn})")
    src(f"acc_ = cuda.local.array({TM * TN}, {npn})")
    src(f"ar_ = cuda.local.array({TM}, {npn})")
    src(f"br_ = cuda.local.array({TN}, {npn})")
    src("tx_ = cuda.threadIdx.x")
    src("ty_ = cuda.threadIdx.y")
    src(f"t_ = ty_ * {RN} + tx_")
    src(f"m0_ = cuda.blockIdx.y * {BM}")
    src(f"n0_ = cuda.blockIdx.x * {BN}")
    src("z_ = cuda.blockIdx.z" if split is None else f"z_ = cuda.blockIdx.z % {split[0]}")
    if zsetup is not None:
        zsetup(src)
    src(f"M_ = {M}")
    src(f"N_ = {N}")
    src(f"K_ = {K}")
    if early_exit:                # M depends on z: whole blocks past the end (uniform)
        src("if m0_ >= M_:")
        src("    return")
    if split is None:
        src("kb_ = 0")
        src("ke_ = K_")
    else:
        groups, _ = split
        src(f"ns_ = cuda.gridDim.z // {groups}")
        src(f"per_ = ({_ceil('K_', BK)} + ns_ - 1) // ns_ * {BK}")
        src(f"kb_ = (cuda.blockIdx.z // {groups}) * per_")
        src("ke_ = kb_ + per_")
        src("if ke_ > K_:")
        src("    ke_ = K_")
    sa_slots = _stage(src, a, "a", BM, "m0_", cfg, nt)
    sb_slots = _stage(src, b, "b", BN, "n0_", cfg, nt)
    for q in range(TM * TN):
        src(f"acc_[{q}] = {literal(0, dt)}")

    def fetch(k0):             # the slice at k0 into registers (0 past the end: no access)
        for tile, op, slots in (("a", a, sa_slots), ("b", b, sb_slots)):
            for s in slots:
                src(f"v_ = {literal(0, dt)}")
                op.load(src, s, f"{tile}g{s}_", f"({k0} + {tile}k{s}_)", s == 0 or not op.along_k)
                src(f"p{tile}{s}_ = v_")
    fetch("kb_")
    src(f"for k0_ in range(kb_, ke_, {BK}):")
    src.indent()
    for tile, slots in (("a", sa_slots), ("b", sb_slots)):
        for s in slots:
            src(f"s{tile}_[{tile}k{s}_, {tile}l{s}_] = p{tile}{s}_")
    src("cuda.syncthreads()")
    fetch(f"(k0_ + {BK})")     # the next slice's global loads overlap this slice's math
    src(f"for kk_ in range({BK}):")
    src.indent()
    for i in range(TM):
        src(f"ar_[{i}] = sa_[kk_, ty_ + {i * RM}]" if i else "ar_[0] = sa_[kk_, ty_]")
    for j in range(TN):
        src(f"br_[{j}] = sb_[kk_, tx_ + {j * RN}]" if j else "br_[0] = sb_[kk_, tx_]")
    for i in range(TM):
        for j in range(TN):
            src(f"acc_[{i * TN + j}] += ar_[{i}] * br_[{j}]")
    src.dedent()
    src("cuda.syncthreads()")
    src.dedent()
    for i in range(TM):
        src(f"gm_ = m0_ + ty_ + {i * RM}")
        src("if gm_ < M_:")
        src.indent()
        row(src)
        for j in range(TN):
            src(f"gn_ = n0_ + tx_ + {j * RN}")
            src("if gn_ < N_:")
            src.indent()
            store(src, f"acc_[{i * TN + j}]")
            src.dedent()
        src.dedent()
    return src.text(), (RN, RM)


def _epilogue(g, out_idx, out_off):
    """store(src, v): the group's elementwise DAG on accumulator ``v`` at the output
    multi-index ``out_idx`` (names), stored at flat ``out_off``; and whether a leaf
    reads the row's position (n, y, x) -- the last index is the column."""
    m = g.master
    out_t = g.root.type
    leaves = g.leaves()
    by_row = any(not (st == 0 or isinstance(st, Affine) and st.coeff == 0)
                 for u in leaves for st in broadcast_strides(u.type, out_t.shape)[:-1])

    def store(src, v):
        env = {m.outputs[0]: v}
        for k, u in enumerate(leaves):
            src(f"x{k}_ = {g.arg[u]}[{offset(out_idx, broadcast_strides(u.type, out_t.shape))}]")
            env[u] = f"x{k}_"
        dag(src, g.nodes, env, skip=(m,))
        src(f"out0[{out_off}] = {env[g.root]}")
    return store, by_row


def _check_root(g):
    if g.root.type.shape != g.master.outputs[0].type.shape:
        raise NotImplementedError("a GEMM epilogue that broadcasts the result to a larger shape")


def matmul(name, node, g, sig, cfg):
    from .kernels import Kernel
    m = g.master
    _check_root(g)
    a_t, b_t, c_t = m.inputs[0].type, m.inputs[1].type, m.outputs[0].type
    dt = c_t.dtype
    Mx, Kx, Px = a_t.shape[-2], a_t.shape[-1], b_t.shape[-1]
    batch = c_t.shape[:-2]
    a_bs = broadcast_strides(a_t.with_shape(a_t.shape[:-2]), batch)
    b_bs = broadcast_strides(b_t.with_shape(b_t.shape[:-2]), batch)
    A, B = g.arg[m.inputs[0]], g.arg[m.inputs[1]]
    bidx = [f"z{k}" for k in range(len(batch))]

    def zsetup(src):
        unflatten(src, "z_", batch, "z")
        src(f"ab_ = ({offset(bidx, a_bs)}) * {aff(Affine.product([Mx, Kx]))}")
        src(f"bb_ = ({offset(bidx, b_bs)}) * {aff(Affine.product([Kx, Px]))}")
        src(f"cb_ = z_ * {aff(Affine.product([Mx, Px]))}")

    def load_a(src, s, mn, k, fresh):
        src(f"if {mn} < M_ and {k} < K_:")
        src(f"    v_ = {A}[ab_ + {mn}*K_ + {k}]")

    def load_b(src, s, mn, k, fresh):
        src(f"if {k} < K_ and {mn} < N_:")
        src(f"    v_ = {B}[bb_ + {k}*N_ + {mn}]")

    store, _ = _epilogue(g, [*bidx, "gm_", "gn_"], "cb_ + gm_*N_ + gn_")
    text, block = gemm(name, sig, cfg, dt=dt, M=aff(Mx), N=aff(Px), K=aff(Kx),
                       a=Operand(True, load_a), b=Operand(False, load_b),
                       row=lambda src: None, store=store, zsetup=zsetup)
    grid = (_ceil(aff(Px), cfg.bn), f"max(1, {_ceil(aff(Mx), cfg.bm)})", f"max(1, {numel(batch)})")
    return Kernel(name, text, "matmul", grid, block)


def _conv_row_prep(Ho, Wo, sh, sw, add_h, add_w, H, W, C, cg_off):
    """prep of a conv A slot: row gm -> image base, y*sh + add_h, x*sw + add_w, valid."""
    def prep(src, s, mn):
        src(f"r_ = {mn}")
        src(f"ax{s}_ = (r_ % {Wo})*{sw} + {add_w}")
        src(f"r_ = r_ // {Wo}")
        src(f"ay{s}_ = (r_ % {Ho})*{sh} + {add_h}")
        src(f"ab{s}_ = (r_ // {Ho})*{H * W * C} + {cg_off}")
        src(f"av{s}_ = {mn} < M_")
    return prep


def _row_nyx(Ho, Wo):
    def row(src):
        src("r_ = gm_")
        src(f"ox_ = r_ % {Wo}")
        src(f"r_ = r_ // {Wo}")
        src(f"oy_ = r_ % {Ho}")
        src(f"on_ = r_ // {Ho}")
    return row


def conv2d(name, node, g, sig, cfg):
    """rows: output pixels (n, y, x); k: taps (i, j, c) of the group's channels; B: the
    HWIO kernel as [kh*kw*C/G, O]; conv groups on grid z."""
    from .kernels import Kernel
    m = g.master
    _check_root(g)
    x_t, w_t, o_t = m.inputs[0].type, m.inputs[1].type, m.outputs[0].type
    NB, H, W, C = x_t.shape
    kh, kw, cg, O = w_t.shape
    _, Ho, Wo, _ = o_t.shape
    at = m.attrs
    (sh, sw), (dh, dw), (pt, _, pl, _), G = at["strides"], at["dilations"], at["pads"], at["groups"]
    og = O // G
    X, Wt = g.arg[m.inputs[0]], g.arg[m.inputs[1]]

    def load_a(src, s, mn, k, fresh):
        if fresh:
            src(f"k_ = {k}")
            src(f"c_ = k_ % {cg}")
            src(f"q_ = k_ // {cg}")
            src(f"di_ = (q_ // {kw})*{dh}")
            src(f"dj_ = (q_ % {kw})*{dw}")
        src(f"yy_ = ay{s}_ + di_")
        src(f"xx_ = ax{s}_ + dj_")
        src(f"if av{s}_ and k_ < K_ and 0 <= yy_ < {H} and 0 <= xx_ < {W}:")
        src(f"    v_ = {X}[ab{s}_ + (yy_*{W} + xx_)*{C} + c_]")

    def load_b(src, s, mn, k, fresh):
        src(f"if {k} < K_ and {mn} < N_:")
        src(f"    v_ = {Wt}[{k}*{O} + go_ + {mn}]")

    store, leaves = _epilogue(g, ["on_", "oy_", "ox_", "go_ + gn_"], f"gm_*{O} + go_ + gn_")
    text, block = gemm(
        name, sig, cfg, dt=o_t.dtype, M=aff(Affine.product([NB, Ho, Wo])), N=str(og),
        K=str(kh * kw * cg), zsetup=lambda src: src(f"go_ = z_ * {og}"),
        a=Operand(True, load_a, _conv_row_prep(Ho, Wo, sh, sw, f"-{pt}", f"-{pl}", H, W, C,
                                               f"z_ * {cg}")),
        b=Operand(False, load_b), row=_row_nyx(Ho, Wo) if leaves else (lambda src: None),
        store=store)
    grid = (_ceil(str(og), cfg.bn), f"max(1, {_ceil(aff(Affine.product([NB, Ho, Wo])), cfg.bm)})", str(G))
    return Kernel(name, text, "implicit_gemm", grid, block)


def conv2d_transpose(name, node, g, sig, cfg):
    """rows: output pixels (n, Y, X); k: taps (i, j, c); A: the input pixel each tap
    reads (Y + top - i*dh must be a multiple of the stride, else 0); B: the kernel
    [kh,kw,O,C] as [kh*kw*C, O] (contiguous along k). Strided without dilation: one
    GEMM per output phase (``_conv2d_transpose_phases``), so no tap is wasted."""
    from .kernels import Kernel
    m = g.master
    _check_root(g)
    x_t, w_t, o_t = m.inputs[0].type, m.inputs[1].type, m.outputs[0].type
    NB, H, W, C = x_t.shape
    kh, kw, O, _ = w_t.shape
    _, Ho, Wo, _ = o_t.shape
    at = m.attrs
    (sh, sw), (dh, dw), (pt, _, pl, _) = at["strides"], at["dilations"], at["pads"]
    X, Wt = g.arg[m.inputs[0]], g.arg[m.inputs[1]]
    if (dh, dw) == (1, 1) and (sh, sw) != (1, 1):
        return _conv2d_transpose_phases(name, g, sig, cfg, m, NB, H, W, C, kh, kw, O, Ho, Wo,
                                        sh, sw, pt, pl, X, Wt)

    def axis(var, s_, n_):
        return f"{var} >= 0 and {var} // {s_} < {n_}" + (f" and {var} % {s_} == 0" if s_ > 1 else "")

    def load_a(src, s, mn, k, fresh):
        if fresh:
            src(f"k_ = {k}")
            src(f"c_ = k_ % {C}")
            src(f"q_ = k_ // {C}")
            src(f"di_ = (q_ // {kw})*{dh}")
            src(f"dj_ = (q_ % {kw})*{dw}")
        src(f"yy_ = ay{s}_ - di_")
        src(f"xx_ = ax{s}_ - dj_")
        src(f"if av{s}_ and k_ < K_ and {axis('yy_', sh, H)} and {axis('xx_', sw, W)}:")
        src(f"    v_ = {X}[ab{s}_ + ((yy_ // {sh})*{W} + xx_ // {sw})*{C} + c_]")

    def load_b(src, s, mn, k, fresh):
        src(f"if {k} < K_ and {mn} < N_:")
        src(f"    v_ = {Wt}[(({k}) // {C} * {O} + {mn})*{C} + ({k}) % {C}]")

    store, leaves = _epilogue(g, ["on_", "oy_", "ox_", "gn_"], f"gm_*{O} + gn_")
    M = aff(Affine.product([NB, Ho, Wo]))
    text, block = gemm(
        name, sig, cfg, dt=o_t.dtype, M=M, N=str(O), K=str(kh * kw * C),
        a=Operand(True, load_a, _conv_row_prep(Ho, Wo, 1, 1, pt, pl, H, W, C, 0)),
        b=Operand(True, load_b), row=_row_nyx(Ho, Wo) if leaves else (lambda src: None),
        store=store)
    grid = (_ceil(str(O), cfg.bn), f"max(1, {_ceil(M, cfg.bm)})", "1")
    return Kernel(name, text, "implicit_gemm", grid, block)


def _conv2d_transpose_phases(name, g, sig, cfg, m, NB, H, W, C, kh, kw, O, Ho, Wo, sh, sw, pt, pl,
                             X, Wt):
    """Strided, undilated conv2d_transpose as sh*sw dense GEMMs, one per output phase
    (py, px) on grid z: the output rows Y = ys + sh*Y' with (Y + top) % sh == py take
    exactly the taps i = py + sh*ti (ti < tpy), reading input row qy + Y' - ti (columns
    likewise). Rows: (n, Y', X') of the phase; k: (ti, tj, c); a phase no tap reaches
    (kernel smaller than the stride) stores its epilogue of 0."""
    from .kernels import Kernel

    def zsetup(src):
        src(f"py_ = z_ // {sw}")
        src(f"px_ = z_ % {sw}")
        src(f"ys_ = (py_ - {pt}) % {sh}")
        src(f"xs_ = (px_ - {pl}) % {sw}")
        src(f"hp_ = ({Ho} - ys_ + {sh - 1}) // {sh}")
        src(f"wp_ = ({Wo} - xs_ + {sw - 1}) // {sw}")
        src(f"tpy_ = ({kh} - py_ + {sh - 1}) // {sh}")
        src(f"tpx_ = ({kw} - px_ + {sw - 1}) // {sw}")
        src("tpd_ = tpx_ if tpx_ > 0 else 1")     # a divisor even where no tap reaches (K = 0)
        src(f"qy_ = (ys_ + {pt} - py_) // {sh}")
        src(f"qx_ = (xs_ + {pl} - px_) // {sw}")

    def prep_a(src, s, mn):
        src(f"r_ = {mn}")
        src(f"ax{s}_ = r_ % wp_ + qx_")
        src("r_ = r_ // wp_")
        src(f"ay{s}_ = r_ % hp_ + qy_")
        src(f"ab{s}_ = (r_ // hp_)*{H * W * C}")
        src(f"av{s}_ = {mn} < M_")

    def load_a(src, s, mn, k, fresh):
        if fresh:
            src(f"k_ = {k}")
            src(f"c_ = k_ % {C}")
            src(f"q_ = k_ // {C}")
            src("ti_ = q_ // tpd_")
            src("tj_ = q_ % tpd_")
        src(f"yy_ = ay{s}_ - ti_")
        src(f"xx_ = ax{s}_ - tj_")
        src(f"if av{s}_ and k_ < K_ and 0 <= yy_ < {H} and 0 <= xx_ < {W}:")
        src(f"    v_ = {X}[ab{s}_ + (yy_*{W} + xx_)*{C} + c_]")

    def load_b(src, s, mn, k, fresh):
        if fresh:
            src(f"kb2_ = {k}")
            src(f"q2_ = kb2_ // {C}")
            src(f"wt_ = ((py_ + {sh}*(q2_ // tpd_))*{kw} + px_ + {sw}*(q2_ % tpd_))*{O * C} + kb2_ % {C}")
        src(f"if kb2_ < K_ and {mn} < N_:")
        src(f"    v_ = {Wt}[wt_ + {mn}*{C}]")

    def row(src):
        src("r_ = gm_")
        src("ox_ = xs_ + (r_ % wp_)*" + str(sw))
        src("r_ = r_ // wp_")
        src("oy_ = ys_ + (r_ % hp_)*" + str(sh))
        src("on_ = r_ // hp_")

    store, _ = _epilogue(g, ["on_", "oy_", "ox_", "gn_"], f"((on_*{Ho} + oy_)*{Wo} + ox_)*{O} + gn_")
    text, block = gemm(
        name, sig, cfg, dt=m.outputs[0].type.dtype, M=f"{aff(NB)} * hp_ * wp_", N=str(O),
        K=f"tpy_ * tpx_ * {C}", zsetup=zsetup, early_exit=True,
        a=Operand(True, load_a, prep_a), b=Operand(True, load_b), row=row, store=store)
    rows = aff(Affine.product([NB, -(-Ho // sh), -(-Wo // sw)]))
    grid = (_ceil(str(O), cfg.bn), f"max(1, {_ceil(rows, cfg.bm)})", str(sh * sw))
    return Kernel(name, text, "implicit_gemm", grid, block)


def conv2d_backprop_kernel(name, node, g, sig, cfg):
    """dW[(i,j,c), o] = sum over r = (n,y,x) of Xwin[r, (i,j,c)] * dY[r, o]: rows are the
    kernel taps, the reduction runs over the batch and the image, split in chunks over
    grid z (with the conv groups) that add atomically into the zeroed result."""
    from .kernels import Kernel
    m = g.master
    if g.root is not m.outputs[0]:
        raise NotImplementedError("an epilogue after conv2d_backprop_kernel")
    x_t, dy_t, o_t = m.inputs[0].type, m.inputs[1].type, m.outputs[0].type
    NB, H, W, C = x_t.shape
    _, Ho, Wo, O = dy_t.shape
    kh, kw = m.attrs["kernel"]
    at = m.attrs
    (sh, sw), (dh, dw), (pt, _, pl, _), G = at["strides"], at["dilations"], at["pads"], at["groups"]
    cg, og = C // G, O // G
    X, DY = g.arg[m.inputs[0]], g.arg[m.inputs[1]]

    def prep_a(src, s, mn):       # tap m = (i, j, c) of this slot: fixed across k
        src(f"c_ = {mn} % {cg}")
        src(f"q_ = {mn} // {cg}")
        src(f"ay{s}_ = (q_ // {kw})*{dh} - {pt}")
        src(f"ax{s}_ = (q_ % {kw})*{dw} - {pl}")
        src(f"ac{s}_ = z_ * {cg} + c_")
        src(f"av{s}_ = {mn} < M_")

    def load_a(src, s, mn, k, fresh):
        src(f"r_ = {k}")
        src(f"xx_ = (r_ % {Wo})*{sw} + ax{s}_")
        src(f"r_ = r_ // {Wo}")
        src(f"yy_ = (r_ % {Ho})*{sh} + ay{s}_")
        src(f"if av{s}_ and {k} < ke_ and 0 <= yy_ < {H} and 0 <= xx_ < {W}:")
        src(f"    v_ = {X}[((r_ // {Ho})*{H * W} + yy_*{W} + xx_)*{C} + ac{s}_]")

    def load_b(src, s, mn, k, fresh):
        src(f"if {k} < ke_ and {mn} < N_:")
        src(f"    v_ = {DY}[{k}*{O} + z_ * {og} + {mn}]")

    def store(src, v):
        src(f"cuda.atomic.add(out0, gm_*{O} + z_ * {og} + gn_, {v})")

    R = aff(Affine.product([NB, Ho, Wo]))
    Mg = kh * kw * cg
    tiles = -(-og // cfg.bn) * -(-Mg // cfg.bm) * G
    per = max(1, cfg.split_blocks // tiles)
    nsplit = f"max(1, min({_ceil(R, 4 * cfg.bk)}, {per}))"
    text, block = gemm(
        name, sig, cfg, dt=o_t.dtype, M=str(Mg), N=str(og), K=R,
        a=Operand(False, load_a, prep_a), b=Operand(False, load_b),
        row=lambda src: None, store=store, split=(G, nsplit), zero=str(kh * kw * cg * O))
    grid = (_ceil(str(og), cfg.bn), _ceil(str(Mg), cfg.bm), f"{G} * {nsplit}")
    nt = (cfg.bm // cfg.tm) * (cfg.bn // cfg.tn)
    zero_grid = (f"max(1, min({_ceil(str(kh * kw * cg * O), nt)}, {cfg.max_blocks}))",)
    return Kernel(name, text, "implicit_gemm", grid, block, zero_grid=zero_grid)


GEMM = {"matmul": matmul, "conv2d": conv2d, "conv2d_transpose": conv2d_transpose,
        "conv2d_backprop_kernel": conv2d_backprop_kernel}


def fit_tile(cfg, rows, cols):
    """``cfg`` with its block tile reshaped (same threads, same tm x tn) for a GEMM of
    ``rows`` x ``cols`` (ints when static): half as wide and twice as tall when the
    columns fill at most half a tile (a 16-channel conv, a 10-class dense layer), or
    the converse for few rows (a kernel gradient with few taps)."""
    from dataclasses import replace
    if isinstance(cols, int) and cols <= cfg.bn // 2 and not (isinstance(rows, int) and rows <= cfg.bm):
        # the tile that doubles keeps its loads (and registers) if half as deep divides
        shapes = [dict(bm=cfg.bm * 2, bn=cfg.bn // 2, bk=cfg.bk // 2), dict(bm=cfg.bm * 2, bn=cfg.bn // 2)]
    elif isinstance(rows, int) and rows <= cfg.bm // 2 and not (isinstance(cols, int) and cols <= cfg.bn):
        shapes = [dict(bm=cfg.bm // 2, bn=cfg.bn * 2, bk=cfg.bk // 2), dict(bm=cfg.bm // 2, bn=cfg.bn * 2)]
    else:
        return cfg
    for shape in shapes:
        try:
            return replace(cfg, **shape)
        except ValueError:     # the reshaped tile does not divide among the threads
            continue
    return cfg


def _static_mn(m):
    """(rows, cols) of the group's GEMM, each an int when static (else None)."""
    fam = m.op.family
    o = m.outputs[0].type.shape
    if fam == "matmul":
        rows, cols = o[-2], o[-1]
    elif fam == "conv2d_backprop_kernel":
        rows, cols = o[0] * o[1] * o[2], o[3] // m.attrs["groups"]
    else:
        rows, cols = None, o[3] // m.attrs.as_dict().get("groups", 1)
    return (rows if isinstance(rows, int) else None), (cols if isinstance(cols, int) else None)


def gemm_kernel(name, node, g, sig, cfg):
    """The GEMM-shaped kernel of group ``g`` or None (depthwise conv2d: the point kernel)."""
    m = g.master
    fam = m.op.family
    if fam not in GEMM or len(getattr(g, "masters", [m])) > 1 or \
            g.root.type.shape != m.outputs[0].type.shape:
        return None
    if fam == "conv2d" and m.inputs[1].type.shape[2] == 1 and m.attrs["groups"] > 1:
        return None        # depthwise: one tap per channel, memory-bound: a direct gather
    if fam == "conv2d_backprop_kernel" and m.attrs["groups"] > 1 and \
            m.inputs[0].type.shape[3] == m.attrs["groups"]:
        return None
    return GEMM[fam](name, node, g, sig, fit_tile(cfg, *_static_mn(m)))
