"""Kernels for ``fusion`` nodes: one kernel per fused group.

A group's body (its region) holds at most one *master* op -- a matmul or a
reduction -- and elementwise ops around it. Elementwise values are never stored:
``Dag`` evaluates them at one point of an iteration space, loading each region input
with its broadcast strides over that space (numpy broadcasting composes, so strides
relative to the final shape are enough). Three shapes of group:

- loop fusion (no master): one loop nest over the result, the whole elementwise
  DAG evaluated per element;
- matmul + epilogue: the matmul computes a row (packed GEMM: a tile) of C into the
  output buffer, then the epilogue (bias, activation, residual add, ...) rewrites it
  in place while it is in cache -- or, for a packed GEMM or a Winograd conv whose
  epilogue is made of scalar.py's VECTOR ops, runs on each vector of C before its one store;
- any other master (conv, pooling) + epilogue: the master's kernel writes the output,
  then one loop applies the epilogue in place (one kernel, no intermediate buffer);
- elementwise prologue + reduction: the reduction's input is computed on the fly.
"""
from __future__ import annotations

from ...ir.opdef import Kind
from ...ir.types import Affine, DType
from .emit import (I64, broadcast_strides, collapse, const, contiguous_strides, lane_splat, parallel_nest,
                   splat, vector_ptr)
from .kernels import KERNELS, kernel, kernel_context, matmul_into, reduce_into
from .kernels_dwconv import depthwise_ok, depthwise_parallel, depthwise_rows
from .kernels_gemm import gemm_packed_into, gemm_packed_parallel
from .kernels_winograd import winograd_parallel, winograd_units
from .scalar import SCALAR, VECTOR

ELEMENTWISE_KINDS = (Kind.ELEMENTWISE, Kind.BROADCAST)


def _is_inline_constant(n) -> bool:
    return n.op.family == "constant" and n.attrs["value"].size == 1


def split_body(body):
    """(master node or None, the other nodes); raises if the body is not a group
    this backend can emit as one kernel."""
    masters = [n for n in body.nodes if n.op.kind not in ELEMENTWISE_KINDS
               and not _is_inline_constant(n) and n.op.family != "slice"]   # slices are views
    if len(masters) > 1:
        raise NotImplementedError(f"a fusion group with several non-elementwise ops "
                                  f"({', '.join(n.op.name for n in masters)})")
    return (masters[0] if masters else None), [n for n in body.nodes if n not in masters]


class Dag:
    """Evaluates elementwise values of a region at one point of an iteration space."""

    def __init__(self, kc, module, body):
        self.kc, self.module = kc, module
        self.producer = {o: n for n in body.nodes for o in n.outputs}

    def at(self, root, leaves: dict):
        """``leaves`` maps values read from memory to a function giving the loaded
        element at the current point; everything else is computed (once)."""
        return self.at_all([root], leaves)[0]

    def at_all(self, roots, leaves: dict) -> list:
        """The values of several roots at one point, sharing loads and computations."""
        memo: dict = {}
        b = self.kc.b

        def value(v):
            if v in memo:
                return memo[v]
            if v in leaves:
                r = leaves[v]()
            else:
                n = self.producer[v]
                if _is_inline_constant(n):
                    r = const(v.type.dtype, n.attrs["value"].reshape(()).item())
                else:
                    xs = [value(u) for u in n.inputs]
                    r = SCALAR[n.op.name](b, self.module, xs, tuple(u.type.dtype for u in n.inputs),
                                          v.type.dtype, n.attrs.as_dict())
            memo[v] = r
            return r

        return [value(r) for r in roots]


def _in_ptrs(c, body) -> dict:
    """Region input -> its pointer in context ``c`` (the kernel's or a task's): the
    kernel's arguments are the results, then the region's inputs."""
    return dict(zip(body.inputs, c.args[len(body.outputs):]))


def _leaf_loader(kc, ptr, dtype, offset):
    return lambda: kc.load(ptr, offset, dtype)


@kernel("fusion")
def emit_fusion(module, name, node, symbols):
    (body,) = node.regions
    master, _ = split_body(body)
    if len(body.outputs) != 1 and master is not None:
        raise NotImplementedError("fusion groups around a matmul, conv or reduction with several results")
    kc = kernel_context(module, name, node, symbols)
    out_ptr, args = kc.args[0], _in_ptrs(kc, body)
    root = body.outputs[0]
    out_t = root.type

    if master is None:                                   # loop fusion
        # leaves: region inputs (broadcast over the result) and slices of them (strided views)
        leaves = [(v, v, [], broadcast_strides(v.type, out_t.shape)) for v in body.inputs]
        for n in body.nodes:
            if n.op.family == "slice":
                off, own = slice_view(n)
                leaves.append((n.outputs[0], n.inputs[0], off,
                               broadcast_view(n.outputs[0].type.shape, own, out_t.shape)))
        shape, strides = collapse(out_t.shape, contiguous_strides(out_t.shape), *[l[3] for l in leaves])

        def point(c, offs):     # every result's value first, then the stores (a result
            ptrs = _in_ptrs(c, body)    # may be written over an input: in place)
            lv = {v: _leaf_loader(c, ptrs[src], v.type.dtype, _plus(c, o, off))
                  for (v, src, off, _), o in zip(leaves, offs[1:])}
            values = Dag(c, module, body).at_all(body.outputs, lv)
            for k, (r, x) in enumerate(zip(body.outputs, values)):
                c.store(x, c.args[k], offs[0], r.type.dtype)

        parallel_nest(kc, shape, strides, point)
    elif master.op.family == "matmul":                   # matmul + epilogue per row of C
        a_ptr, b_ptr = (args[v] for v in master.inputs)
        row = _row_epilogue(kc, module, body, master, root, out_ptr, args)
        matmul_into(kc, master, out_ptr, a_ptr, b_ptr, row)
    elif master.op.family in ("matmul_packed", "conv2d_packed"):   # GEMM tiles + epilogue
        def emit(tc, ranges):   # some panels or rows, in a (possibly threaded) task
            t_args = _in_ptrs(tc, body)
            row = _row_epilogue(tc, module, body, master, root, tc.args[0], t_args)
            vec = _vector_epilogue(tc, module, body, master, root, t_args)
            a, bp = (t_args[v] for v in master.inputs)
            gemm_packed_into(tc, master, tc.args[0], a, bp, row, vector_epilogue=vec, **ranges)

        gemm_packed_parallel(kc, master, emit)
    elif _unit_kernel(master) is not None:               # units (rows, tiles) + epilogue
        units, parallel = _unit_kernel(master)

        def emit(tc, lo, hi):
            t_args = _in_ptrs(tc, body)
            row = _row_epilogue(tc, module, body, master, root, tc.args[0], t_args)
            kw = {}
            if master.op.family == "conv2d_winograd":    # output vectors: the register epilogue
                kw["vector_epilogue"] = _vector_epilogue(tc, module, body, master, root, t_args)
            units(tc, master, tc.args[0], *(t_args[v] for v in master.inputs), lo, hi, row, **kw)

        parallel(kc, master, emit)
    elif master.op.kind is Kind.OUT_FUSABLE:             # any other master, then the epilogue
        c = master.outputs[0]
        fn = KERNELS[master.op.family](module, f"{name}.master", master, symbols)
        kc.b.call(fn, [out_ptr, *[args[v] for v in master.inputs], kc.dims_ptr])
        leaves = [v for v in body.inputs if v not in master.inputs or _used_outside(body, v, master)]
        shape, strides = collapse(out_t.shape, contiguous_strides(out_t.shape),
                                  *[broadcast_strides(v.type, out_t.shape) for v in leaves])

        def point(ctx, offs):
            ptrs = _in_ptrs(ctx, body)
            lv = {v: _leaf_loader(ctx, ptrs[v], v.type.dtype, o) for v, o in zip(leaves, offs[1:])}
            lv[c] = _leaf_loader(ctx, ctx.args[0], out_t.dtype, offs[0])
            ctx.store(Dag(ctx, module, body).at(root, lv), ctx.args[0], offs[0], out_t.dtype)

        if root is not c:
            parallel_nest(kc, shape, strides, point)
    elif master.op.family == "reduce":                   # prologue + reduction
        if root is not master.outputs[0]:
            raise NotImplementedError("elementwise ops after a reduction in one group")
        x = master.inputs[0]
        leaves = list(body.inputs)
        strides = [broadcast_strides(v.type, x.type.shape) for v in leaves]

        def load_x(c, offs):
            ptrs = _in_ptrs(c, body)
            lv = {v: _leaf_loader(c, ptrs[v], v.type.dtype, o) for v, o in zip(leaves, offs)}
            return Dag(c, module, body).at(x, lv)

        reduce_into(kc, module, master, strides, load_x)
    else:
        raise NotImplementedError(f"no fused kernel for a group around {master.op.name}")
    return kc.finish()


def _unit_kernel(master):
    """(units, parallel) of a master whose kernel works in units that finish output
    pixels -- ``units(tc, node, out, x, w, lo, hi, epilogue)`` over the units a task got,
    ``parallel(kc, node, emit)`` splitting them across the pool -- or None: depthwise
    conv rows, Winograd tile blocks."""
    if master.op.family == "conv2d" and depthwise_ok(master):
        return depthwise_rows, depthwise_parallel
    if master.op.family == "conv2d_winograd":
        return winograd_units, winograd_parallel
    return None


def slice_view(n):
    """(element offset as a list of monomials, strides over the slice's result) of
    ``slice`` node ``n`` read in place from its operand (a region input)."""
    from ...ir.ops.data import slice_ranges
    x_t = n.inputs[0].type
    a = n.attrs
    ranges = slice_ranges(x_t, a["axes"], a["begin"], a["end"], a["steps"])
    own = contiguous_strides(x_t.shape)
    terms = []                      # the offset: a sum of monomials (strides may hold symbols)
    strides = list(own)
    for ax, r in ranges.items():
        if len(r) and r.start:
            terms.append(own[ax] * r.start)
        strides[ax] = own[ax] * r.step
    return terms, strides


def _plus(kc, o, terms):
    for t in terms:
        o = kc.b.add(o, kc.affine(t))
    return o


def broadcast_view(shape, strides, out_shape):
    """Strides of a view of ``shape`` (with ``strides``) over ``out_shape``, numpy
    broadcasting: 0 along broadcast dimensions."""
    pad = len(out_shape) - len(shape)
    out = []
    for k in range(len(out_shape)):
        j = k - pad
        out.append(Affine(0) if j < 0 or (shape[j] == 1 and out_shape[k] != 1) else strides[j])
    return out


def _row_epilogue(kc, module, body, master, root, out_ptr, args):
    """The epilogue of a GEMM-like master as ``fn(row, j0, width)``: rewrite columns
    [j0, j0+width) of flat row ``row`` of the output in place (C is read back while in
    cache). None when the group is the master alone."""
    c = master.outputs[0]
    if root is c:
        return None
    out_t = root.type
    leaves = [v for v in body.inputs if v not in master.inputs or _used_outside(body, v, master)]
    leaf_strides = [broadcast_strides(v.type, out_t.shape) for v in leaves]
    n = kc.dim(out_t.shape[-1])
    dag = Dag(kc, module, body)
    b = kc.b

    def row(r, j0, width):
        bases = _row_offsets(kc, r, out_t.shape, leaf_strides)
        crow = b.mul(r, n)
        with kc.loop(width, name="e") as jj:
            j = b.add(j0, jj)
            ci = b.add(crow, j)
            lv = {v: _leaf_loader(kc, args[v], v.type.dtype, b.add(base, b.mul(j, kc.affine(s[-1]))))
                  for v, base, s in zip(leaves, bases, leaf_strides)}
            lv[c] = _leaf_loader(kc, out_ptr, out_t.dtype, ci)
            kc.store(dag.at(root, lv), out_ptr, ci, out_t.dtype)

    return row


#: a GEMM's epilogue runs on the accumulators before they are stored, when it is made
#: of these ops only (False: always a pass over each stored row, for A/B measurements)
VECTOR_EPILOGUE = True


def _vector_epilogue(kc, module, body, master, root, args):
    """The epilogue of a packed GEMM as ``fn(row, j, vec)``: the group's result at
    columns j .. j + VW of flat row ``row``, computed from ``vec`` (the GEMM's, in a
    register) -- or None when the group is the master alone, or has an op outside
    scalar.py's VECTOR, a value neither float32 nor a comparison's bool (read by a where), or
    an operand read other than along C's row (contiguous) or broadcast over it. One
    vector store per vector of C instead of a store, a reload and a store again: a
    [32768 x 128] @ [128 x 512] GEMM with a bias and relu took 13% longer than without
    them that way."""
    c = master.outputs[0]
    if not VECTOR_EPILOGUE or root is c:
        return None
    f32 = DType.f32
    for n in body.nodes:
        if n is master:
            continue
        if _is_inline_constant(n):
            if n.outputs[0].type.dtype is not f32:
                return None
        elif n.op.name not in VECTOR or any(v.type.dtype not in (f32, DType.bool)
                                                 for v in (*n.inputs, *n.outputs)):
            return None
        elif n.op.name != "where" and any(v.type.dtype is DType.bool for v in n.inputs):
            return None             # only a where reads a bool (made by a comparison)
    out_t = root.type
    if out_t.dtype is not f32:
        return None
    leaves = [v for v in body.inputs if v not in master.inputs or _used_outside(body, v, master)]
    leaf_strides = [broadcast_strides(v.type, out_t.shape) for v in leaves]
    if any(v.type.dtype is not f32 or s[-1] not in (Affine(0), Affine(1)) for v, s in zip(leaves, leaf_strides)):
        return None
    producer = {o: n for n in body.nodes for o in n.outputs}
    b = kc.b
    # the row's offset matters only for operands that vary along rows (not a bias)
    by_row = [any(st != Affine(0) for st in s[:-1]) for s in leaf_strides]
    row_strides = [s for s, r in zip(leaf_strides, by_row) if r]
    bases: dict = {}        # row value -> offsets of the operands that vary along rows
    invariant: dict = {}    # (operand, column value) -> its vector, for row-invariant operands

    def load(v, base, s, j, vt):
        if s[-1] == Affine(0):    # one value per row: splat
            return lane_splat(b, b.load(b.gep(args[v], [base], inbounds=True), align=4), vt)
        return b.load(vector_ptr(b, args[v], b.add(base, j), vt), align=4)

    def fn(row, j, vec):
        """(The caller makes ``row`` and ``j`` once per tile: values made from the same
        objects are shared, within the tile's straight-line code.)"""
        vt = vec.type
        if row_strides and row not in bases:
            bases[row] = _row_offsets(kc, row, out_t.shape, row_strides)
        offs = iter(bases.get(row, ()))
        memo = {c: vec}
        for v, s, r in zip(leaves, leaf_strides, by_row):
            if r:
                memo[v] = load(v, next(offs), s, j, vt)
            else:
                if (v, j) not in invariant:
                    invariant[(v, j)] = load(v, I64(0), s, j, vt)
                memo[v] = invariant[(v, j)]

        def value(v):
            if v not in memo:
                n = producer[v]
                if _is_inline_constant(n):
                    memo[v] = splat(vt, float(n.attrs["value"].reshape(()).item()))
                else:
                    memo[v] = VECTOR[n.op.name](b, module, [value(u) for u in n.inputs])
            return memo[v]

        return value(root)

    return fn


def _row_offsets(kc, r, shape, strides_list):
    """Element offsets, per stride vector, of the start of flat row ``r`` of ``shape``
    (all dims but the last): the row index is unflattened with div/mod once per row."""
    b = kc.b
    idx, rem = [], r
    for d in reversed(shape[:-1]):
        dv = kc.dim(d)
        idx.append(b.srem(rem, dv))
        rem = b.sdiv(rem, dv)
    idx.reverse()
    out = []
    for s in strides_list:
        off = I64(0)
        for i, st in zip(idx, s[:-1]):
            off = b.add(off, b.mul(i, kc.affine(st)))
        out.append(off)
    return out


def _used_outside(body, v, master) -> bool:
    """Whether region input ``v`` is read by a node other than the master."""
    return any(v in n.inputs for n in body.nodes if n is not master)
