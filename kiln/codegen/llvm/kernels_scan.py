"""The ``scan`` kernel: a loop over time that runs the body once per step.

The body is lowered like a graph (``lower_graph`` into the same module: its kernels,
its constants and an internal entry ``<kernel>.main(inputs, outputs, params, arena,
dims)``), so every op and fused group a graph may hold may sit in a body. The scan's
kernel is

    void k(out..., in..., i8* scratch, i64* dims)

and its scratch (sized and laid out by ``scan_scratch_layout`` in
kiln/passes/memory.py) holds the body's arena, a second buffer per carry, and
staging buffers for steps that are not contiguous.

Per step s (time index t = s, or T-1-s when ``reverse``):

- carries are double-buffered between the final-carry result and the scratch copy:
  step s writes the result buffer when (T-1-s) is even, so the last step lands in the
  result; it reads what step s-1 wrote (step 0 reads the initial carry operand), so a
  body never reads a buffer it is writing;
- a sequence step is a pointer into the operand when contiguous (``axis`` 0, or only
  size-1 dims before it), else it is copied into its staging buffer first;
- a per-step output is written straight into its stack at t when contiguous, else
  into staging and copied into the stack after the body ran.

With T = 0 the initial carries are copied to the results.

A row-independent recurrence (``split_rows`` in kiln/passes/scan_rows.py: every forward
RNN) runs as units of SPLIT_ROWS batch rows on the thread pool: each chunk of units is a
whole recurrence over its rows, with the body called at N = its row count and without
the pool, in its own part of the scratch (sized for that by the memory planner).
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.ops.control import split_operands, step_type
from ...ir.types import Affine, Poly
from ...passes.memory import scan_scratch_layout, step_is_contiguous
from ...passes.scan_rows import SPLIT_ROWS, split_rows, split_scratch_size
from .emit import I1, I8, I64, KernelContext, ptr
from .kernels import kernel
from .kernels_data import strided_copy
from .module import lower_graph


def _bytes(kc, t) -> ll.Value:
    return kc.affine(Affine.product(t.shape) * t.dtype.itemsize)


def _split(t, axis):
    """(outer, length, inner) element counts of ``t`` around ``axis``, as Affines."""
    return (Affine.product(t.shape[:axis]), Affine.product([t.shape[axis]]),
            Affine.product(t.shape[axis + 1:]))


def _copy_step(kc, t, axis, stack, step, time, into_stack: bool):
    """Copy step ``time`` of the stacked buffer ``stack`` (type ``t``) to ``step``
    (contiguous), or back when ``into_stack``."""
    outer, length, inner = _split(t, axis)
    dt = t.dtype
    stack = kc.b.bitcast(stack, ptr(dt))
    step = kc.b.bitcast(step, ptr(dt))
    base = kc.b.mul(time, kc.affine(inner))
    shape = [outer, inner]
    stack_strides, step_strides = [length * inner, Affine(1)], [inner, Affine(1)]
    if into_stack:
        strided_copy(kc, shape, stack, stack_strides, base, step, step_strides, I64(0), dt)
    else:
        strided_copy(kc, shape, step, step_strides, I64(0), stack, stack_strides, base, dt)


def _poly_at(kc, p: Poly, env: dict) -> ll.Value:
    """``p`` evaluated with the symbols of ``env`` (name -> i64) taken from it."""
    acc = I64(0)
    for syms, c in p.terms.items():
        t = I64(c)
        for sym in syms:
            t = kc.b.mul(t, env[sym] if sym in env else kc.dim(sym))
        acc = kc.b.add(acc, t)
    return acc


def _row_bytes(t) -> Affine:
    """Bytes of one row (axis 0) of ``t``."""
    return Affine.product(t.shape[1:]) * t.dtype.itemsize


@kernel("scan")
def emit_scan(module, name, node, symbols):
    (body,) = node.regions
    a = node.attrs
    nc, ns = a["num_carries"], a["num_sequences"]
    entry = module.get_global(lower_graph(body, prefix=f"{name}.", module=module,
                                          symbols=symbols).entry)
    i8p = I8.as_pointer()
    arg_types = ([ptr(o.type.dtype) for o in node.outputs]
                 + [ptr(v.type.dtype) for v in node.inputs] + [i8p])
    names = ([f"out{i}" for i in range(len(node.outputs))]
             + [f"in{i}" for i in range(len(node.inputs))] + ["scratch"])
    kc = KernelContext(module, name, arg_types, symbols, names)
    n_out, n_in = len(node.outputs), len(node.inputs)
    B = split_rows(node)
    if B is None:
        b = kc.b
        _recurrence(kc, node, entry, [b.bitcast(p, i8p) for p in kc.args[:n_out]],
                    [b.bitcast(p, i8p) for p in kc.args[n_out:n_out + n_in]], kc.args[-1],
                    kc.dims_ptr, {})
        return kc.finish()

    # Row-independent: units of SPLIT_ROWS rows go to the thread pool; a chunk of units
    # runs the whole recurrence on its rows (the body sees N = its row count, and no
    # pool: one parallel region for the whole scan, not several per step), with its
    # own scratch at unit * (one unit's scratch). All rows in one chunk (one thread,
    # or the pool busy) is the plain recurrence, whose kernels may use the pool.
    _, unit_bytes = split_scratch_size(node, B)
    carries, seqs, invs = split_operands(node.inputs, nc, ns)
    units = kc.b.sdiv(kc.b.add(kc.dim(B), I64(SPLIT_ROWS - 1)), I64(SPLIT_ROWS))
    bidx = symbols.index(B)

    def task(tc, lo, hi):
        b = tc.b
        n_rows = tc.dim(B)
        r0 = b.mul(lo, I64(SPLIT_ROWS))
        r1 = b.mul(hi, I64(SPLIT_ROWS))
        r1 = b.select(b.icmp_signed("<", r1, n_rows), r1, n_rows)
        mine = b.sub(r1, r0)
        whole = b.icmp_signed("==", mine, n_rows)
        with b.goto_entry_block():
            local = b.alloca(I64, size=len(symbols) + 1, name="unit_dims")
        for k in range(len(symbols) + 1):
            v = b.load(b.gep(tc.dims_ptr, [I64(k)]))
            if k == bidx:
                v = mine
            elif k == len(symbols):          # the pool: kept only for the whole batch
                v = b.select(whole, v, I64(0))
            b.store(v, b.gep(local, [I64(k)]))

        def rows_in(p, t):                   # this chunk's rows of a batch-leading buffer
            return b.gep(b.bitcast(p, i8p), [b.mul(r0, tc.affine(_row_bytes(t)))])

        def rows_type(v, k):                 # a carry, or one step of a time-major stack
            return v.type if k < nc else step_type(v.type, 0)

        outs = [rows_in(p, rows_type(o, k)) for k, (p, o) in enumerate(zip(tc.args[:n_out], node.outputs))]
        ins = ([rows_in(p, rows_type(v, k)) for k, (p, v) in
                enumerate(zip(tc.args[n_out:n_out + nc + ns], [*carries, *seqs]))]
               + [b.bitcast(p, i8p) for p in tc.args[n_out + nc + ns:n_out + n_in]])
        scratch = b.gep(tc.args[-1], [b.mul(lo, _poly_at(tc, unit_bytes, {}))])
        _recurrence(tc, node, entry, outs, ins, scratch, local, {B: mine})

    kc.parallel(units, task, min_work=1)     # each unit is a whole recurrence
    return kc.finish()


def _recurrence(kc, node, entry, outs, ins, scratch, body_dims, rows: dict):
    """The loop over steps (see the module docstring). ``outs``/``ins``: i8* of the
    kernel's operands (for a chunk of rows: at its first row); ``body_dims``: the dims
    the body is called with; ``rows``: symbol -> i64 overriding the batch for sizes
    of one chunk (strides between steps keep the full batch)."""
    (body,) = node.regions
    a = node.attrs
    nc, ns, axis, reverse = a["num_carries"], a["num_sequences"], a["axis"], a["reverse"]
    carries, seqs, _ = split_operands(node.inputs, nc, ns)
    layout = scan_scratch_layout(node)
    b = kc.b
    i8p = I8.as_pointer()

    def part(key):
        return b.gep(scratch, [_poly_at(kc, layout[key], rows)])

    init, seq_ptrs, inv_ptrs = split_operands(ins, nc, ns)
    alt = [part(("carry", j)) for j in range(nc)]
    body_arena = part("body")
    with b.goto_entry_block():
        in_arr = b.alloca(i8p, size=max(1, len(body.inputs)), name="body_in")
        out_arr = b.alloca(i8p, size=max(1, len(body.outputs)), name="body_out")
    length = kc.dim(seqs[0].type.shape[axis])

    with kc.loop(length, name="s") as s:
        t = b.sub(b.sub(length, I64(1)), s) if reverse else s
        # carries: write the result when (T-1-s) is even; read what step s-1 wrote
        w_even = b.icmp_signed("==", b.and_(b.sub(b.sub(length, I64(1)), s), I64(1)), I64(0))
        r_even = b.icmp_signed("==", b.and_(b.sub(length, s), I64(1)), I64(0))
        first = b.icmp_signed("==", s, I64(0))
        reads, writes = [], []
        for j in range(nc):
            writes.append(b.select(w_even, outs[j], alt[j]))
            reads.append(b.select(first, init[j], b.select(r_even, outs[j], alt[j])))
        steps = []
        for i, v in enumerate(seqs):
            if step_is_contiguous(v.type, axis):
                off = b.mul(t, _bytes(kc, step_type(v.type, axis)))
                steps.append(b.gep(seq_ptrs[i], [off]))
            else:
                stage = part(("step", i))
                _copy_step(kc, v.type, axis, seq_ptrs[i], stage, t, into_stack=False)
                steps.append(stage)
        per_step = []
        for k, o in enumerate(node.outputs[nc:]):
            if step_is_contiguous(o.type, axis):
                off = b.mul(t, _bytes(kc, step_type(o.type, axis)))
                per_step.append(b.gep(outs[nc + k], [off]))
            else:
                per_step.append(part(("out", k)))
        for k, p in enumerate([*reads, *steps, *inv_ptrs]):
            b.store(p, b.gep(in_arr, [I64(k)]))
        for k, p in enumerate([*writes, *per_step]):
            b.store(p, b.gep(out_arr, [I64(k)]))
        b.call(entry, [in_arr, out_arr, ll.Constant(i8p.as_pointer(), None), body_arena,
                       body_dims])
        for k, o in enumerate(node.outputs[nc:]):
            if not step_is_contiguous(o.type, axis):
                _copy_step(kc, o.type, axis, outs[nc + k], per_step[k], t, into_stack=True)

    if nc:   # T = 0: the final carries are the initial ones
        memcpy = kc.module.declare_intrinsic("llvm.memcpy", [i8p, i8p, I64])
        with b.if_then(b.icmp_signed("==", length, I64(0))):
            for j, v in enumerate(carries):
                nbytes = _poly_at(kc, Poly.of(Affine.product(v.type.shape) * v.type.dtype.itemsize), rows)
                b.call(memcpy, [outs[j], init[j], nbytes, ll.Constant(I1, 0)])
