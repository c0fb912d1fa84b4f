"""Kernel emitters, one per kernel family (an op names its family; see kiln/ir/opdef.py).

``KERNELS[family](module, name, node, symbols)`` (registered with ``@kernel(family)``;
other kernel modules register theirs the same way) returns the kernel's LLVM function,
whose signature is ``void name(out..., in..., i64* dims)`` (see emit.py). Families
that need no code (``reshape`` aliases its input buffer, ``constant`` is a global)
are handled by the module assembler instead.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.opdef import normalize_axis
from ...ir.types import Affine
from .emit import (I32, I64, LLTYPE, KernelContext, as_sizes, broadcast_strides, collapse, const,
                   contiguous_strides, parallel_nest, ptr, splat, strided_nest, undef)
from . import vmath
from .scalar import SCALAR


KERNELS: dict = {}


def kernel(family: str):
    """Register the emitter of a kernel family."""
    def deco(fn):
        if family in KERNELS:
            raise ValueError(f"kernel family {family!r} registered twice")
        KERNELS[family] = fn
        return fn
    return deco


def kernel_context(module, name, node, symbols) -> KernelContext:
    """The function for a node's kernel: outputs then inputs, then dims."""
    types = [ptr(o.type.dtype) for o in node.outputs] + [ptr(v.type.dtype) for v in node.inputs]
    names = [f"out{i}" for i in range(len(node.outputs))] + [f"in{i}" for i in range(len(node.inputs))]
    return KernelContext(module, name, types, symbols, names)


@kernel("elementwise")
def emit_elementwise(module, name, node, symbols, scalar: str | None = None, in_strides=None):
    """out[i] = f(in0[s0(i)], in1[s1(i)], ...) over the output's index space, each
    operand walked with its own strides (broadcast dims have stride 0)."""
    kc = kernel_context(module, name, node, symbols)
    out_t = node.outputs[0].type
    in_dts = tuple(v.type.dtype for v in node.inputs)
    strides = in_strides or [broadcast_strides(v.type, out_t.shape) for v in node.inputs]
    shape, all_strides = collapse(out_t.shape, contiguous_strides(out_t.shape), *strides)
    fn = SCALAR[scalar or node.op.name]
    attrs = node.attrs.as_dict()

    def body(c, offs):
        xs = [c.load(p, o, v.type.dtype) for p, o, v in zip(c.args[1:], offs[1:], node.inputs)]
        c.store(fn(c.b, module, xs, in_dts, out_t.dtype, attrs), c.args[0], offs[0], out_t.dtype)

    parallel_nest(kc, shape, all_strides, body)
    return kc.finish()


@kernel("transpose")
def emit_transpose(module, name, node, symbols):
    x = node.inputs[0].type
    own = contiguous_strides(x.shape)
    perm = node.attrs["perm"]
    return emit_elementwise(module, name, node, symbols, scalar="copy",
                            in_strides=[[own[p] for p in perm]])


_IDENTITY = {"reduce_sum": 0.0, "reduce_mean": 0.0, "reduce_max": float("-inf"),
             "reduce_min": float("inf")}


#: float sums run in SUM_LANES interleaved partial sums, see ``ordered_sum``
SUM_LANES = 16


def ordered_sum(kc, count: ll.Value, value_at, dt) -> ll.Value:
    """The sum of ``value_at(k)`` for k in [0, count), in an order the IR fixes: element
    k is added to partial sum k % SUM_LANES (each in order of k), and the partial sums
    are combined by halving (lanes j and j + 8, then j + 4, ...). No reassociation is
    left to the optimizer -- so code compiled at any optimization level (the quick and
    optimized tiers, the AOT library) rounds alike -- yet the loop over a chunk's lanes
    is a map the optimizer vectorizes: one vector add per SUM_LANES elements, and
    SUM_LANES independent chains instead of one. ``value_at`` is emitted twice (the
    chunks, the rest)."""
    return lane_fold(kc, count, value_at, dt, 0.0, kc.b.fadd)


def lane_max(kc, count: ll.Value, value_at, dt) -> ll.Value:
    """The largest ``value_at(k)`` for k in [0, count) (-inf for none), by the lanes of
    ``lane_fold``: one vector max per SUM_LANES elements. NaNs are skipped (x > m is
    false): a softmax's row with a NaN still comes out NaN, through its exp and sum.
    (A running ``llvm.maximum``, NaN- and signed-zero-exact, vectorized into five
    instructions per vector and a long horizontal chain per row.)"""
    b = kc.b
    return lane_fold(kc, count, value_at, dt, float("-inf"),
                     lambda m, x: b.select(b.fcmp_ordered(">", x, m), x, m))


def lane_fold(kc, count: ll.Value, value_at, dt, identity: float, combine) -> ll.Value:
    """``combine`` over ``value_at(k)``, k in [0, count): element k into lane k %
    SUM_LANES (lanes start at ``identity``), then the lanes by halving (see
    ``ordered_sum``). ``combine(acc, x)`` must work on scalars and vectors alike."""
    b = kc.b
    t = LLTYPE[dt]
    vt = ll.VectorType(t, SUM_LANES)
    with b.goto_entry_block():
        lanes = b.alloca(vt, name="lanes")
    b.store(splat(vt, identity), lanes)
    lane_ptr = b.bitcast(lanes, t.as_pointer())

    def add(lane, k):
        p = b.gep(lane_ptr, [lane], inbounds=True)
        b.store(combine(b.load(p), value_at(k)), p)

    start = b.mul(b.sdiv(count, I64(SUM_LANES)), I64(SUM_LANES))
    with kc.loop(start, name="chunk", step=SUM_LANES) as c:
        with kc.loop(I64(SUM_LANES), name="lane") as j:
            add(j, b.add(c, j))
    with kc.loop(count, start=start, name="rest") as k:
        add(b.sub(k, start), k)
    v, width = b.load(lanes), SUM_LANES
    while width > 1:
        width //= 2
        halves = [b.shuffle_vector(v, undef(v.type),
                                   ll.Constant(ll.VectorType(I32, width), list(range(h, h + width))))
                  for h in (0, width)]
        v = combine(*halves)
    return b.extract_element(v, I32(0))


@kernel("reduce")
def emit_reduce(module, name, node, symbols):
    kc = kernel_context(module, name, node, symbols)
    x_t = node.inputs[0].type
    reduce_into(kc, module, node, [contiguous_strides(x_t.shape)],
                lambda c, offs: c.load(c.args[1], offs[0], x_t.dtype))
    return kc.finish()


def reduce_into(kc, module, node, in_strides: list, load_x):
    """Initialize the output (the kernel's first argument) with the identity, then
    accumulate every input element into the output element it reduces to (output
    strides are 0 along reduced axes).

    The input is walked over its shape with ``in_strides`` (one stride vector per
    operand ``load_x`` reads); ``load_x(ctx, offsets)`` produces the element, so a fused
    elementwise prologue is computed on the fly instead of being stored. When the
    outermost (collapsed) dimension is kept, the walk is split across the thread pool
    along it: each output element is still summed by one thread in the same order."""
    b = kc.b
    out_ptr = kc.args[0]
    x_t, out_t = node.inputs[0].type, node.outputs[0].type
    dt = x_t.dtype
    op = node.op.name
    axes = sorted(normalize_axis(op, a, x_t.rank) for a in node.attrs["axes"])

    ident = _IDENTITY[op]
    if not dt.is_float and op == "reduce_max":
        ident = -(2 ** (8 * dt.itemsize - 1))
    if not dt.is_float and op == "reduce_min":
        ident = 2 ** (8 * dt.itemsize - 1) - 1
    with kc.loop(kc.numel(out_t.shape), name="init") as i:
        kc.store(const(dt, ident), out_ptr, i, dt)

    kept = [d for k, d in enumerate(x_t.shape) if k not in axes]
    kept_strides = iter(contiguous_strides(kept))
    out_strides = [Affine(0) if k in axes else next(kept_strides) for k in range(x_t.rank)]
    shape, strides = collapse(x_t.shape, out_strides, *in_strides)
    t = LLTYPE[dt]
    vmax = module.declare_intrinsic("llvm.maximum", [t], ll.FunctionType(t, [t, t]))

    def element(c, offs):
        x = load_x(c, offs[1:])
        cb = c.b
        acc = c.load(c.args[0], offs[0], dt)
        if op == "reduce_max":
            r = cb.call(vmax, [acc, x]) if dt.is_float else cb.select(cb.icmp_signed(">", x, acc), x, acc)
        elif op == "reduce_min":
            vmin = module.declare_intrinsic("llvm.minimum", [t], ll.FunctionType(t, [t, t]))
            r = cb.call(vmin, [acc, x]) if dt.is_float else cb.select(cb.icmp_signed("<", x, acc), x, acc)
        else:
            r = cb.fadd(acc, x) if dt.is_float else cb.add(acc, x)
        c.store(r, c.args[0], offs[0], dt)

    body, point = element, Affine(1)
    if dt.is_float and op in ("reduce_sum", "reduce_mean") and shape and strides[0][-1] == Affine(0):
        # the innermost (collapsed) dim is summed: ``ordered_sum`` along it, per output element
        *shape, inner = as_sizes(shape)
        last = [s[-1] for s in strides]
        strides = [s[:-1] for s in strides]

        def row(c, offs):           # one output element's whole row
            cb = c.b
            steps = [c.affine(s) for s in last[1:]]
            total = ordered_sum(c, c.affine(inner), lambda k: load_x(
                c, [cb.add(o, cb.mul(k, s)) for o, s in zip(offs[1:], steps)]), dt)
            c.store(cb.fadd(c.load(c.args[0], offs[0], dt), total), c.args[0], offs[0], dt)
        body, point = row, inner
    if shape and strides[0][0] != Affine(0):      # the outermost dim is kept: split it
        parallel_nest(kc, shape, strides, body, point_work=point)
    else:
        strided_nest(kc, shape, strides, lambda offs: body(kc, offs))
    if op == "reduce_mean":
        count = kc.affine(Affine.product([x_t.shape[a] for a in axes]))
        scale = b.fdiv(const(dt, 1), b.sitofp(count, t))
        with kc.loop(kc.numel(out_t.shape), name="mean") as i:
            kc.store(b.fmul(kc.load(out_ptr, i, dt), scale), out_ptr, i, dt)


#: softmax rows of at least this many elements in all go to the thread pool
SOFTMAX_MIN_WORK = 1 << 14


@kernel("softmax")
def emit_softmax(module, name, node, symbols):
    """Per slice along ``axis``: m = max, e = exp(x - m) (stored), out = e / sum(e).
    Slices are independent, so they are split across the thread pool. (Explicit vectors
    were measured slower than what the loop vectorizer makes of the scalar loops: it
    interleaves four vectors of exp.)"""
    kc = kernel_context(module, name, node, symbols)
    b = kc.b
    t = node.inputs[0].type
    ax = normalize_axis("softmax", node.attrs["axis"], t.rank)
    outer = kc.numel(t.shape[:ax])
    r = kc.dim(t.shape[ax])
    inner = kc.numel(t.shape[ax + 1:])
    slices = b.mul(outer, inner)

    def task(tc, lo, hi):
        rt, it = tc.dim(t.shape[ax]), tc.numel(t.shape[ax + 1:])
        with tc.loop(hi, start=lo, name="s") as s:
            o, j = tc.b.sdiv(s, it), tc.b.srem(s, it)
            base = tc.b.add(tc.b.mul(o, tc.b.mul(rt, it)), j)
            _softmax_slice(tc, module, tc.args[0], tc.args[1], base, rt, it, t.dtype)

    kc.parallel(slices, task, work=b.mul(slices, r), min_work=SOFTMAX_MIN_WORK)
    return kc.finish()


def _softmax_slice(kc, module, out_ptr, in_ptr, base, r, inner, dt):
    """One slice: elements base + k*inner for k in [0, r)."""
    b = kc.b

    def at(k):
        return b.add(base, b.mul(k, inner))

    m = lane_max(kc, r, lambda k: kc.load(in_ptr, at(k), dt), dt)

    def exp_at(k):
        e = vmath.exp_nonpositive(b, module, b.fsub(kc.load(in_ptr, at(k), dt), m), dt)
        kc.store(e, out_ptr, at(k), dt)
        return e
    inv = b.fdiv(const(dt, 1.0), ordered_sum(kc, r, exp_at, dt))
    with kc.loop(r, name="k3") as k:
        kc.store(b.fmul(kc.load(out_ptr, at(k), dt), inv), out_ptr, at(k), dt)


@kernel("matmul")
def emit_matmul(module, name, node, symbols):
    kc = kernel_context(module, name, node, symbols)
    c_ptr, a_ptr, b_ptr = kc.args
    matmul_into(kc, node, c_ptr, a_ptr, b_ptr)
    return kc.finish()


def matmul_into(kc, node, c_ptr, a_ptr, b_ptr, row_epilogue=None):
    """C[b] = A[b] @ B[b] for every (broadcast) batch index b: zero a row of C, then
    for each k add A[i,k] * B[k,:] to it; the innermost loop runs along contiguous
    rows of B and C so it vectorizes. (Blocked microkernels: [cpu-speed].)

    ``row_epilogue(row, j0, width)`` runs after each row of C is complete (``row``: the
    flat row index of C), while the row is in cache (fused bias, activation, residual)."""
    b = kc.b
    a_t, b_t = node.inputs[0].type, node.inputs[1].type
    c_t = node.outputs[0].type
    dt = c_t.dtype
    M, K, P = a_t.shape[-2], a_t.shape[-1], b_t.shape[-1]
    batch = c_t.shape[:-2]
    a_bs = broadcast_strides(a_t.with_shape(a_t.shape[:-2]), batch)
    b_bs = broadcast_strides(b_t.with_shape(b_t.shape[:-2]), batch)
    a_mat, b_mat, c_mat = Affine.product([M, K]), Affine.product([K, P]), Affine.product([M, P])
    a_bs = [s * a_mat for s in a_bs]
    b_bs = [s * b_mat for s in b_bs]
    c_bs = [s * c_mat for s in contiguous_strides(batch)]
    Mv, Kv, Pv = kc.dim(M), kc.dim(K), kc.dim(P)

    def body(offs):
        c0, a0, b0 = offs[:3]
        with kc.loop(Mv, name="m") as i:
            crow = b.add(c0, b.mul(i, Pv))
            arow = b.add(a0, b.mul(i, Kv))
            with kc.loop(Pv, name="z") as j:
                kc.store(const(dt, 0.0), c_ptr, b.add(crow, j), dt)
            with kc.loop(Kv, name="k") as k:
                aik = kc.load(a_ptr, b.add(arow, k), dt)
                brow = b.add(b0, b.mul(k, Pv))
                with kc.loop(Pv, name="n") as j:
                    ci = b.add(crow, j)
                    kc.store(vmath.fma(b, kc.module, aik, kc.load(b_ptr, b.add(brow, j), dt),
                                       kc.load(c_ptr, ci, dt)), c_ptr, ci, dt)
            if row_epilogue is not None:
                row_epilogue(b.sdiv(crow, Pv), I64(0), Pv)

    strided_nest(kc, batch, [c_bs, a_bs, b_bs], body)
