"""Assemble one LLVM module for a graph: one kernel function per node, and one entry

    void <prefix>main(i8** inputs, i8** outputs, i8** params, i8* arena, i64* dims)

that computes every buffer's address and calls the kernels in order.

Where values live:
- graph inputs, outputs and parameters: the pointers passed in (``params`` in the
  order of ``graph.params``);
- ``constant`` nodes: private 64-byte-aligned globals (the value is in the binary);
- ``reshape`` outputs: the same buffer as their operand (row-major, no copy);
- a node output that is a graph output (once): written straight into the output;
- every other node output: a slot of the arena at a byte offset that is a
  polynomial in the symbols (``ArenaLayout``); each slot's size is rounded up to 64
  bytes per unit of the symbols, so every slot stays 64-byte aligned for any batch
  size. Slots are not reused yet: memory planning ([passes]) will share them.
Graph outputs that are not written directly are copied at the end (llvm.memcpy).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import llvmlite.ir as ll

from ...ir.graph import Graph, Value
from ...ir.types import Affine
from .emit import I8, I64, VOID, ptr
from .kernels import KERNELS

ALIGN = 64


class Poly:
    """A polynomial in the symbols: {sorted symbol tuple: coefficient}."""

    def __init__(self, terms: dict | None = None):
        self.terms = {k: v for k, v in (terms or {}).items() if v}

    def __add__(self, other: "Poly") -> "Poly":
        t = dict(self.terms)
        for k, v in other.terms.items():
            t[k] = t.get(k, 0) + v
        return Poly(t)

    @staticmethod
    def of(a: Affine) -> "Poly":
        return Poly({a.syms: a.coeff})

    def evaluate(self, bindings) -> int:
        return sum(Affine(c, s).evaluate(bindings) for s, c in self.terms.items())

    def __repr__(self):
        if not self.terms:
            return "0"
        return " + ".join("*".join([str(c), *s]) for s, c in sorted(self.terms.items()))


def slot_size(v: Value) -> Affine:
    a = Affine.product(v.type.shape) * v.type.dtype.itemsize
    return Affine(-(-a.coeff // ALIGN) * ALIGN, a.syms)


@dataclass
class ArenaLayout:
    offsets: dict = field(default_factory=dict)   # Value -> Poly (bytes)
    size: Poly = field(default_factory=Poly)

    def add(self, v: Value):
        self.offsets[v] = self.size
        self.size = self.size + Poly.of(slot_size(v))


@dataclass
class LoweredModule:
    module: ll.Module
    entry: str
    symbols: tuple
    arena: ArenaLayout
    param_names: list
    kernels: list            # (kernel function name, node) in call order


def lower_graph(g: Graph, prefix: str = "kiln_") -> LoweredModule:
    m = ll.Module(name=g.name)
    symbols = g.symbols
    storage: dict = {}          # Value -> ("input", i) | ("param", j) | ("global", gv) | ("arena",) | ("output", k) | ("alias", v)
    arena = ArenaLayout()
    for i, v in enumerate(g.inputs):
        storage[v] = ("input", i)
    param_names = list(g.params)
    for j, name in enumerate(param_names):
        storage[g.params[name]] = ("param", j)
    out_count: dict = {}
    for v in g.outputs:
        out_count[v] = out_count.get(v, 0) + 1

    kernels = []
    for idx, n in enumerate(g.nodes):
        fam = n.op.family
        if fam == "constant":
            val = n.attrs["value"]
            data = bytearray(val.tobytes()) or bytearray(1)
            gv = ll.GlobalVariable(m, ll.ArrayType(I8, len(data)), f"const{idx}")
            gv.global_constant = True
            gv.linkage = "private"
            gv.align = ALIGN
            gv.initializer = ll.Constant(ll.ArrayType(I8, len(data)), data)
            storage[n.outputs[0]] = ("global", gv)
            continue
        if fam == "reshape":
            src = n.inputs[0]
            storage[n.outputs[0]] = storage[src] if storage[src][0] == "alias" else ("alias", src)
            continue
        if fam not in KERNELS:
            raise NotImplementedError(f"the CPU backend has no kernel for op {n.op.name} "
                                      f"(family {fam})")
        kname = f"k{idx}_{n.op.name}"
        KERNELS[fam](m, kname, n, symbols)
        kernels.append((kname, n))
        for o in n.outputs:
            if out_count.get(o) == 1:
                storage[o] = ("output", g.outputs.index(o))
            else:
                storage[o] = ("arena",)
                arena.add(o)

    _emit_entry(m, prefix + "main", g, storage, arena, kernels, symbols)
    return LoweredModule(m, prefix + "main", symbols, arena, param_names, kernels)


def _emit_entry(m, name, g, storage, arena, kernels, symbols):
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
        elif kind[0] == "global":
            p = b.bitcast(kind[1], i8p)
        elif kind[0] == "alias":
            p = address(kind[1])
        else:
            p = b.gep(arena_ptr, [poly(arena.offsets[v])])
        addr[v] = p
        return p

    for kname, n in kernels:
        args = [b.bitcast(address(v), ptr(v.type.dtype)) for v in (*n.outputs, *n.inputs)]
        b.call(m.get_global(kname), [*args, dims])

    memcpy = m.declare_intrinsic("llvm.memcpy", [i8p, i8p, I64])
    for k, v in enumerate(g.outputs):
        if storage.get(v) == ("output", k):
            continue
        dst = b.load(b.gep(outputs, [I64(k)]))
        nbytes = poly(Poly.of(Affine.product(v.type.shape) * v.type.dtype.itemsize))
        b.call(memcpy, [dst, address(v), nbytes, ll.Constant(ll.IntType(1), 0)])
    b.ret_void()
