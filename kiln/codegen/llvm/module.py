"""Assemble one LLVM module for a graph: one kernel function per node (a ``fusion``
node is one kernel), and one entry

    void <prefix>main(i8** inputs, i8** outputs, i8** params, i8* arena, i64* dims)

that computes every buffer's address and calls the kernels in order.

Where values live is the memory plan's business (kiln/passes/memory.py): inputs,
outputs and parameters are the pointers passed in (``params`` in the order of
``graph.params``); ``constant`` nodes are private 64-byte-aligned globals; ``reshape``
results share their operand's buffer; intermediates sit in the arena at the byte
offsets of the plan (polynomials in the symbols) -- the graph's own plan if the
``memory`` pass ran, else one made here. A kernel that writes over its operand (an
in-place slot) loses the ``noalias`` on that pair. Graph outputs that are not
written directly are copied at the end (llvm.memcpy), then state updates are copied
into their parameters' buffers.

A node whose kernel needs scratch space (a ``scan``: see ``SCRATCH`` in
kiln/passes/memory.py) gets a pointer into the arena past its last argument. A
``scan`` body is lowered by this same function into the enclosing module (``module=``),
with every name prefixed and an internal entry that the scan's kernel calls per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ll

from ...ir.graph import Graph, Value
from ...ir.types import Affine, Poly
from ...passes.memory import classify, plan_memory, scratch_offsets, scratch_size, slot_size
from .emit import I8, I64, VOID, ptr
from .kernels import KERNELS

ALIGN = 64


@dataclass
class LoweredModule:
    module: ll.Module
    entry: str
    symbols: tuple
    arena_bytes: Poly        # bytes of arena the entry needs, a polynomial in the symbols
    param_names: list
    kernels: list            # (kernel function name, node) in call order
    profile: str | None = None   # the counters' global (``profile=True``), see below
    regions: dict = None         # profiled: kernel name -> the LoweredModule of its region


def lower_graph(g: Graph, prefix: str = "kiln_", module: ll.Module | None = None,
                symbols: tuple | None = None, profile: bool = False) -> LoweredModule:
    """Lower ``g`` into a new module; or into ``module`` (a region: every kernel and
    global named ``prefix...``, the entry internal), with ``symbols`` the order of the
    enclosing graph's ``dims``.

    ``profile=True`` instruments the entry: a global ``<prefix>profile`` of i64 holds,
    per kernel in call order, [cycles, calls] accumulated with ``llvm.readcyclecounter``
    around each call, then the same pair for the whole entry; ``<prefix>cycles()``
    reads the counter (to calibrate cycles against wall time). See kiln/runtime/profile.py."""
    m = module if module is not None else ll.Module(name=g.name)
    local = "" if module is None else prefix
    if module is None:
        m.kiln_profile = profile       # regions (scan bodies) lowered into m follow it
        m.kiln_regions = {}            # kernel name -> the region's LoweredModule
    profile = profile or (module is not None and getattr(m, "kiln_profile", False))
    symbols = g.symbols if symbols is None else symbols
    storage = classify(g)
    offsets = g.arena if g.arena is not None else plan_memory(g)
    globals_: dict = {}
    kernels = []
    for idx, n in enumerate(g.nodes):
        fam = n.op.family
        if fam == "constant":
            val = n.attrs["value"]
            data = bytearray(val.tobytes()) or bytearray(1)
            gv = ll.GlobalVariable(m, ll.ArrayType(I8, len(data)), f"{local}const{idx}")
            gv.global_constant = True
            gv.linkage = "private"
            gv.align = ALIGN
            gv.initializer = ll.Constant(ll.ArrayType(I8, len(data)), data)
            globals_[n.outputs[0]] = gv
            continue
        if fam == "reshape":
            continue
        if fam not in KERNELS:
            raise NotImplementedError(f"the CPU backend has no kernel for op {n.op.name} "
                                      f"(family {fam})")
        kname = f"{local}k{idx}_{n.op.name}"
        fn = KERNELS[fam](m, kname, n, symbols)
        _drop_noalias_in_place(fn, n, storage, offsets)
        kernels.append((kname, n))

    scratch = scratch_offsets(g, offsets)
    size = Poly.termwise_max([off + slot_size(v) for v, off in offsets.items()]
                             + [off + scratch_size(n) for n, off in scratch.items()])
    counters = _profile_globals(m, prefix, len(kernels)) if profile else None
    entry = _emit_entry(m, prefix + "main", g, storage, offsets, globals_, kernels, symbols, scratch,
                        counters)
    lowered = LoweredModule(m, prefix + "main", symbols, size, list(g.params), kernels,
                            counters.name if counters is not None else None)
    if module is not None:
        entry.linkage = "internal"
        if profile:
            getattr(m, "kiln_regions", {})[prefix.rstrip(".")] = lowered
    else:
        lowered.regions = m.kiln_regions
    return lowered


def _profile_globals(m, prefix, nkernels):
    arr = ll.ArrayType(I64, 2 * (nkernels + 1))
    gv = ll.GlobalVariable(m, arr, prefix + "profile")
    if prefix.endswith("."):          # a region's counters: no reader function of its own
        gv.initializer = ll.Constant(arr, None)
        gv.align = ALIGN
        return gv
    gv.initializer = ll.Constant(arr, None)
    gv.align = ALIGN
    fn = ll.Function(m, ll.FunctionType(I64, []), prefix + "cycles")
    b = ll.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.call(m.declare_intrinsic("llvm.readcyclecounter", (), ll.FunctionType(I64, [])), []))
    return gv


def _tick(b, counters, slot, start):
    """counters[2*slot] += now - start; counters[2*slot + 1] += 1."""
    rdtsc = b.module.declare_intrinsic("llvm.readcyclecounter", (), ll.FunctionType(I64, []))
    now = b.call(rdtsc, [])
    for k, inc in ((0, b.sub(now, start)), (1, I64(1))):
        p = b.gep(counters, [I64(0), I64(2 * slot + k)])
        b.store(b.add(b.load(p), inc), p)
    return now


def _root(v, storage):
    s = storage[v]
    return s[1] if s[0] == "alias" else v


def _drop_noalias_in_place(fn, n, storage, offsets):
    """Outputs come first in a kernel's arguments, then inputs."""
    outs = [_root(o, storage) for o in n.outputs]
    ins = [_root(v, storage) for v in n.inputs]
    for i, o in enumerate(outs):
        for j, v in enumerate(ins):
            if o is v or (o in offsets and v in offsets and offsets[o] == offsets[v]):
                for a in (fn.args[i], fn.args[len(outs) + j]):
                    a.attributes.discard("noalias")


def _emit_entry(m, name, g, storage, offsets, globals_, kernels, symbols, scratch, counters=None):
    i8p = I8.as_pointer()
    i8pp = i8p.as_pointer()
    fn = ll.Function(m, ll.FunctionType(VOID, [i8pp, i8pp, i8pp, i8p, I64.as_pointer()]), name)
    for a, n in zip(fn.args, ["inputs", "outputs", "params", "arena", "dims"]):
        a.name = n
    inputs, outputs, params, arena_ptr, dims = fn.args
    b = ll.IRBuilder(fn.append_basic_block("entry"))
    dim_vals = {s: b.load(b.gep(dims, [I64(i)]), name=s) for i, s in enumerate(symbols)}

    def poly(p: Poly):
        acc = I64(0)
        for syms, c in p.terms.items():
            t = I64(c)
            for s in syms:
                t = b.mul(t, dim_vals[s])
            acc = b.add(acc, t)
        return acc

    addr: dict = {}

    def address(v: Value):
        if v in addr:
            return addr[v]
        kind = storage[v]
        if kind[0] == "input":
            p = b.load(b.gep(inputs, [I64(kind[1])]))
        elif kind[0] == "param":
            p = b.load(b.gep(params, [I64(kind[1])]))
        elif kind[0] == "output":
            p = b.load(b.gep(outputs, [I64(kind[1])]))
        elif kind[0] == "const":
            p = b.bitcast(globals_[v], i8p)
        elif kind[0] == "alias":
            p = address(kind[1])
        else:
            p = b.gep(arena_ptr, [poly(offsets[v])])
        addr[v] = p
        return p

    if counters is not None:
        rdtsc = m.declare_intrinsic("llvm.readcyclecounter", (), ll.FunctionType(I64, []))
        begin = b.call(rdtsc, [])
    for slot, (kname, n) in enumerate(kernels):
        args = [b.bitcast(address(v), ptr(v.type.dtype)) for v in (*n.outputs, *n.inputs)]
        if n in scratch:
            args.append(b.gep(arena_ptr, [poly(scratch[n])]))
        if counters is not None:
            start = b.call(rdtsc, [])
        b.call(m.get_global(kname), [*args, dims])
        if counters is not None:
            _tick(b, counters, slot, start)

    memcpy = m.declare_intrinsic("llvm.memcpy", [i8p, i8p, I64])
    for k, v in enumerate(g.outputs):
        if storage.get(v) == ("output", k):
            continue
        dst = b.load(b.gep(outputs, [I64(k)]))
        nbytes = poly(Poly.of(Affine.product(v.type.shape) * v.type.dtype.itemsize))
        b.call(memcpy, [dst, address(v), nbytes, ll.Constant(ll.IntType(1), 0)])
    for p, v in g.updates:   # state updates, after every output has been produced
        if storage.get(v) == ("alias", p):    # computed in place (memory.classify)
            continue
        nbytes = poly(Poly.of(Affine.product(v.type.shape) * v.type.dtype.itemsize))
        b.call(memcpy, [address(p), address(v), nbytes, ll.Constant(ll.IntType(1), 0)])
    if counters is not None:
        _tick(b, counters, len(kernels), begin)
    b.ret_void()
    return fn
