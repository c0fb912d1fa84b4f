"""Building blocks for emitting kernels with llvmlite: the dtype table, a function
context that resolves symbolic dimensions at run time, counted loops, and strided
element addressing.

Every kernel has the signature ``void k(T* out..., T* in..., i64* dims)``: buffers
first (outputs, then inputs; all ``noalias``), then the array of symbol values
(``dims[i]`` is the value of the graph's i-th symbol, e.g. the batch size ``N``).
"""
from __future__ import annotations

from contextlib import contextmanager

import llvmlite.ir as ll

from ...ir.types import Affine, DType, TensorType, is_symbol

I1 = ll.IntType(1)
I8 = ll.IntType(8)
I32 = ll.IntType(32)
I64 = ll.IntType(64)
F32 = ll.FloatType()
F64 = ll.DoubleType()
VOID = ll.VoidType()

# the in-memory LLVM type of each dtype (bool is one byte, as numpy stores it)
LLTYPE = {DType.f32: F32, DType.f64: F64, DType.i32: I32, DType.i64: I64, DType.bool: I8}


def ptr(dt: DType) -> ll.PointerType:
    return LLTYPE[dt].as_pointer()


def const(dt: DType, v) -> ll.Constant:
    t = LLTYPE[dt]
    return ll.Constant(t, float(v) if dt.is_float else int(v))


class _Splat(ll.Constant):
    """A vector constant with every lane equal, printed ``splat (float 1.5)`` rather
    than lane by lane (llvmlite's form: 16 lanes of hex floats, in every instruction
    that uses it). LLVM parses both into the same constant; the short form is less
    text to print and parse for both tiers (vmath's polynomials and the GEMM's
    broadcasts use such constants everywhere)."""

    def __init__(self, typ: ll.VectorType, value):
        el = value if isinstance(value, ll.Constant) else ll.Constant(typ.element, value)
        super().__init__(typ, [el] * typ.count)    # lanes kept: llvmlite checks masks by them
        self._text = f"splat ({el.type} {el.get_reference()})"

    def _to_string(self):
        return f"{self.type} {self._text}"

    def _get_reference(self):
        return self._text


def splat(t: ll.VectorType, value) -> ll.Constant:
    """The vector constant of type ``t`` with ``value`` in every lane."""
    return _Splat(t, value)


class _Undef(ll.Constant):
    def __init__(self, typ):
        super().__init__(typ, ll.Undefined)

    def _to_string(self):
        return f"{self.type} undef"

    def _get_reference(self):
        return "undef"


def undef(t) -> ll.Constant:
    """``undef`` of type ``t``, printed as one word (llvmlite spells a vector's lanes)."""
    return _Undef(t)


def vector_ptr(b: ll.IRBuilder, base: ll.Value, index: ll.Value, vt: ll.VectorType) -> ll.Value:
    """A ``vt`` pointer to element ``index`` of ``base`` (an element pointer)."""
    return b.bitcast(b.gep(base, [index], inbounds=True), vt.as_pointer())


def lane_splat(b: ll.IRBuilder, x: ll.Value, vt: ll.VectorType) -> ll.Value:
    """Scalar ``x`` in every lane of a ``vt`` (insertelement + a zero-mask shufflevector:
    one broadcast instruction on x86)."""
    return b.shuffle_vector(b.insert_element(undef(vt), x, I32(0)), undef(vt),
                            splat(ll.VectorType(I32, vt.count), 0))


class KernelContext:
    """One LLVM function under construction, with helpers for dims, loops, threads.

    ``dims`` holds the symbol values, then (at index len(symbols)) the thread pool
    (a ``kiln_pool*`` as an integer; 0 runs everything serially)."""

    def __init__(self, module: ll.Module, name: str, arg_types: list, symbols: tuple,
                 arg_names: list[str] | None = None):
        self.module = module
        self.symbols = symbols
        self.arg_types = list(arg_types)
        fnty = ll.FunctionType(VOID, [*arg_types, I64.as_pointer()])
        self.fn = ll.Function(module, fnty, name)
        self.fn.linkage = "internal"
        self.fn.attributes.add("nounwind")
        for a, t in zip(self.fn.args, arg_types):
            if isinstance(t, ll.PointerType):
                a.add_attribute("noalias")
        for a, n in zip(self.fn.args, (arg_names or []) + ["dims"]):
            a.name = n
        self.args = self.fn.args[:-1]
        self.dims_ptr = self.fn.args[-1]
        entry = self.fn.append_basic_block("entry")
        self.b = ll.IRBuilder(entry)
        self._dims: dict = {}
        self._tasks = 0

    # -- symbolic sizes -----------------------------------------------------------------
    def dim(self, d) -> ll.Value:
        """An i64 for a dimension: a constant, or the symbol's run-time value."""
        if not is_symbol(d):
            return I64(int(d))
        if d not in self._dims:
            idx = self.symbols.index(d)
            with self.b.goto_block(self.fn.entry_basic_block):
                p = self.b.gep(self.dims_ptr, [I64(idx)], inbounds=True)
                self._dims[d] = self.b.load(p, name=d)
        return self._dims[d]

    # -- threads ------------------------------------------------------------------------
    def parallel(self, units: ll.Value, body, work: ll.Value | None = None,
                 min_work: int = 1 << 20):
        """Run ``body(tc, begin, end)`` over the unit range [0, units), split across
        the thread pool when ``work`` (an estimate in flops or elements; default:
        units) is at least ``min_work``; else serially. ``body`` emits into ``tc``, the
        context of an outlined task function ``void (i8* ctx, i64 begin, i64 end)``
        whose ``args``/``dims_ptr`` mirror this function's (packed into ``ctx``)."""
        i8p = I8.as_pointer()
        tname = f"{self.fn.name}.task{self._tasks}"
        self._tasks += 1
        # The task unpacks the kernel's arguments from ``ctx`` and calls its body, a
        # function with the kernel's own signature (noalias pointers) plus the range:
        # inlined, so loops keep the aliasing facts and vectorize without run-time
        # overlap checks (which fail, and fall back to scalar code, for in-place updates).
        inner = KernelContext(self.module, f"{tname}.body", [*self.arg_types, I64, I64], self.symbols)
        inner.fn.attributes.add("alwaysinline")
        inner.args, (begin, end) = inner.fn.args[:len(self.arg_types)], inner.fn.args[len(self.arg_types):-1]
        inner.arg_types = list(self.arg_types)     # what a nested task would pack
        body(inner, begin, end)
        inner.finish()

        task = ll.Function(self.module, ll.FunctionType(VOID, [i8p, I64, I64]), tname)
        task.linkage = "internal"
        task.attributes.add("nounwind")
        tb = ll.IRBuilder(task.append_basic_block("entry"))
        slots = tb.bitcast(task.args[0], i8p.as_pointer())
        vals = [tb.bitcast(tb.load(tb.gep(slots, [I64(i)])), t)
                for i, t in enumerate([*self.arg_types, I64.as_pointer()])]
        tb.call(inner.fn, [*vals[:-1], task.args[1], task.args[2], vals[-1]])
        tb.ret_void()

        b = self.b
        with b.goto_entry_block():
            ctx = b.alloca(ll.ArrayType(i8p, len(self.args) + 1), name="task_ctx")
        slots = b.bitcast(ctx, i8p.as_pointer())
        for i, v in enumerate([*self.args, self.dims_ptr]):
            b.store(b.bitcast(v, i8p), b.gep(slots, [I64(i)]))
        ctx_p = b.bitcast(ctx, i8p)
        pool = b.load(b.gep(self.dims_ptr, [I64(len(self.symbols))]))
        big = b.icmp_signed(">=", work if work is not None else units, I64(min_work))
        threaded = b.and_(big, b.icmp_signed("!=", pool, I64(0)))
        with b.if_else(threaded) as (then, otherwise):
            with then:
                pf = self.module.globals.get("kiln_parallel_for") or ll.Function(
                    self.module, ll.FunctionType(VOID, [i8p, task.type, i8p, I64]),
                    "kiln_parallel_for")
                b.call(pf, [b.inttoptr(pool, i8p), task, ctx_p, units])
            with otherwise:
                b.call(task, [ctx_p, I64(0), units])

    def affine(self, a: Affine) -> ll.Value:
        v = I64(a.coeff)
        for s in a.syms:
            v = self.b.mul(v, self.dim(s), flags=["nsw"])
        return v

    def numel(self, shape) -> ll.Value:
        return self.affine(Affine.product(shape))

    # -- loops --------------------------------------------------------------------------
    @contextmanager
    def loop(self, stop: ll.Value, start: ll.Value | None = None, name: str = "i", step: int = 1):
        """``for (i = start; i < stop; i += step)`` as a canonical loop with a phi induction."""
        b = self.b
        pre = b.block
        header = b.append_basic_block(f"{name}.head")
        body = b.append_basic_block(f"{name}.body")
        end = b.append_basic_block(f"{name}.end")
        b.branch(header)
        b.position_at_end(header)
        i = b.phi(I64, name=name)
        i.add_incoming(start if start is not None else I64(0), pre)
        b.cbranch(b.icmp_signed("<", i, stop), body, end)
        b.position_at_end(body)
        yield i
        nxt = b.add(i, I64(step), name=f"{name}.next", flags=["nsw", "nuw"])
        i.add_incoming(nxt, b.block)
        b.branch(header)
        b.position_at_end(end)

    # -- memory -------------------------------------------------------------------------
    def load(self, base: ll.Value, index: ll.Value, dt: DType) -> ll.Value:
        p = self.b.gep(base, [index], inbounds=True)
        return self.b.load(p, align=dt.itemsize)

    def store(self, value: ll.Value, base: ll.Value, index: ll.Value, dt: DType):
        p = self.b.gep(base, [index], inbounds=True)
        self.b.store(value, p, align=dt.itemsize)

    def finish(self):
        self.b.ret_void()
        return self.fn


def contiguous_strides(shape) -> list[Affine]:
    """Row-major element strides of a shape, as monomials in the symbols."""
    strides, acc = [], Affine(1)
    for d in reversed(shape):
        strides.append(acc)
        acc = acc * d
    return strides[::-1]


def broadcast_strides(t: TensorType, out_shape) -> list[Affine]:
    """Strides of ``t`` over the index space of ``out_shape`` (numpy broadcasting):
    0 along broadcast dimensions."""
    own = contiguous_strides(t.shape)
    pad = len(out_shape) - t.rank
    out = []
    for k in range(len(out_shape)):
        j = k - pad
        if j < 0 or (t.shape[j] == 1 and out_shape[k] != 1):
            out.append(Affine(0))
        else:
            out.append(own[j])
    return out


def collapse(shape, *strides_list):
    """Merge adjacent dimensions that every operand walks contiguously, so that
    ``f32[N,512] + f32[N,512]`` becomes one flat loop. Returns (shape, strides...)."""
    shape = list(shape)
    strides_list = [list(s) for s in strides_list]
    k = len(shape) - 1
    while k > 0:
        if all(s[k - 1] == s[k] * shape[k] for s in strides_list):
            merged = Affine.product([shape[k - 1], shape[k]])
            shape[k - 1:k + 1] = [merged]
            for s in strides_list:
                s[k - 1:k + 1] = [s[k]]
        k -= 1
    return shape, strides_list


def strided_nest(kc: KernelContext, shape, strides_list, body):
    """Loop over ``shape`` (dims or Affine sizes); call ``body(offsets)`` innermost with
    one i64 element offset per stride vector."""
    sizes = as_sizes(shape)
    stride_vals = [[kc.affine(s) for s in strides] for strides in strides_list]
    _nest(kc, sizes, stride_vals, 0, [I64(0)] * len(strides_list), body)


#: elementwise loop nests of at least this many elements are split across the pool
NEST_MIN_WORK = 1 << 14


def parallel_nest(kc: KernelContext, shape, strides_list, body, min_work: int = NEST_MIN_WORK,
                  point_work=Affine(1)):
    """``strided_nest`` with the outermost dimension split across the thread pool when
    the nest has at least ``min_work`` elements (each point counting ``point_work``, an
    Affine: a point that loops over a row itself). ``body(ctx, offsets)`` emits into
    ``ctx``: the kernel's own context, or a task's whose ``args`` mirror the kernel's
    (so the body must take its pointers from ``ctx.args``). Every point must be
    independent of the others (elementwise work)."""
    sizes = as_sizes(shape)
    total = Affine.product(sizes) * point_work
    if not sizes or (not total.syms and total.coeff < min_work):
        strided_nest(kc, sizes, strides_list, lambda offs: body(kc, offs))
        return

    def task(tc, lo, hi):
        stride_vals = [[tc.affine(s) for s in strides] for strides in strides_list]
        with tc.loop(hi, start=lo, name="p0") as i:
            offs = [_step(tc, I64(0), i, sv[0]) for sv in stride_vals]
            _nest(tc, sizes, stride_vals, 1, offs, lambda o: body(tc, o))

    kc.parallel(kc.affine(sizes[0]), task, work=kc.affine(total), min_work=min_work)


def as_sizes(shape) -> list[Affine]:
    return [d if isinstance(d, Affine) else Affine.product([d]) for d in shape]


def _step(kc, o, i, stride):
    if isinstance(stride, ll.Constant) and stride.constant == 0:
        return o
    return kc.b.add(o, kc.b.mul(i, stride, flags=["nsw"]), flags=["nsw"])


def _nest(kc, sizes, stride_vals, k, offs, body):
    if k == len(sizes):
        body(offs)
        return
    with kc.loop(kc.affine(sizes[k]), name=f"i{k}") as i:
        _nest(kc, sizes, stride_vals, k + 1, [_step(kc, o, i, sv[k]) for o, sv in zip(offs, stride_vals)], body)
