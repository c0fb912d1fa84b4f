"""The compile-then-run API: ``kiln.compile(model_or_graph) -> Executable``.

An Executable owns the JIT-compiled code, a snapshot of the parameters, and an
arena for intermediates that grows to the largest batch seen. ``exe(x)`` checks
the inputs against the graph's input types, binds the symbols (the batch size),
and makes ONE native call; one Executable serves every batch size.
"""
from __future__ import annotations

import ctypes
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from ..codegen.llvm import LoweredModule, jit, lower_graph
from ..codegen.llvm.target import jit_quick, link_object, module_text, optimized_texts
from ..passes.memory import arena_size
from ..ir.graph import Graph
from ..ir.types import BATCH, TensorType, is_symbol
from ..passes import PassManager, pipeline
from . import cache as cache_mod
from . import fastcall
from . import threads as threads_mod
from . import profile as profile_mod

_ALIGN = 64
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p)
TARGETS = ("cpu", "cuda")
#: the quick tier answers calls on at most this many samples; a bigger call waits for
#: the optimized code (3-10x faster: on the bench models at batch 256 the quick tier's
#: code took 12 ms (MLP) to 1.2 s (Transformer), about what the optimized tier takes to
#: compile -- beyond that, waiting costs less)
QUICK_MAX_BATCH = 256
#: compile-cache key -> the thread compiling its optimized tier (a compile of the same
#: graph meanwhile waits for it and links its code instead of compiling it again)
_OPTIMIZING: dict = {}
#: every optimized tier being compiled
_OPTIMIZERS: set = set()


def _finish_optimizing():
    """Before ``fork``: let the optimized tiers being compiled finish. One holds LLVM's
    process-wide lock while it compiles; in a child forked meanwhile that lock would
    stay held forever, and the child's first compile would hang."""
    for t in list(_OPTIMIZERS):
        t.join()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_optimizing)


def _data_pointer_reader():
    """The fastest way to an ndarray's data pointer: its ``data`` field, right after the
    object header in numpy's array struct (numba and Cython read it the same way) --
    a fifth of ``a.ctypes.data``'s cost; checked once here, else ``ctypes.data``."""
    probe = np.arange(3, dtype=np.float32)
    vp, off = ctypes.c_void_p, object.__basicsize__
    try:
        if vp.from_address(id(probe) + off).value == probe.ctypes.data:
            return lambda a: vp.from_address(id(a) + off).value
    except Exception:   # pragma: no cover - an unusual interpreter
        pass
    return lambda a: a.ctypes.data


_data = _data_pointer_reader()


def _shape_str(t: TensorType) -> str:
    dims = ["None" if d == BATCH else str(d) for d in t.shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class Executable:
    def __init__(self, graph: Graph, lowered, compiled, timings=(), pool: int = 0):
        self.graph = graph
        self.input_types = [v.type for v in graph.inputs]
        self.input_names = [v.name for v in graph.inputs]
        self.output_types = [v.type for v in graph.outputs]
        self.symbols = lowered.symbols
        self.timings = list(timings)
        self._lowered = lowered
        self._compiled = compiled
        self._fn = _ENTRY(self._fn_address(compiled))
        # the executable's own copies: state updates write into them in place
        self.params: dict = {}
        for name in lowered.param_names:
            val = graph.param_values.get(name)
            if val is None:
                raise ValueError(f"param %{name} has no value; give the graph its parameter "
                                 f"values before compiling")
            self.params[name] = np.array(val, dtype=graph.params[name].type.dtype.np, order="C")
        self._params = list(self.params.values())
        self._param_ptrs = (ctypes.c_void_p * max(1, len(self._params)))(
            *[p.ctypes.data for p in self._params])
        self._arena_raw = np.empty(0, np.uint8)
        self._arena_addr = 0
        self._arena_bytes: dict = {}
        self._lock = threading.Lock()
        # fast-path tables for __call__
        self._in_np = [np.dtype(t.dtype.np) for t in self.input_types]
        self._out_np = [np.dtype(t.dtype.np) for t in self.output_types]
        self._binders = [(i, axis, d) for i, t in enumerate(self.input_types)
                         for axis, d in enumerate(t.shape) if is_symbol(d)]
        # the symbol values, then the thread pool (0: serial) -- see codegen's KernelContext
        self._dims = np.zeros(len(self.symbols) + 1, np.int64)
        self._dims[len(self.symbols)] = pool
        self.threads = threads_mod.pool_threads(pool)
        self._dims_addr = self._dims.ctypes.data
        self._in_ptrs = (ctypes.c_void_p * max(1, len(self.input_types)))()
        self._out_ptrs = (ctypes.c_void_p * max(1, len(self.output_types)))()
        self._last = None           # (input shapes, symbol values, output shapes) of the last call
        self._set_for = None        # the symbol values that _dims and _arena_at are set for
        self._arena_at = 0
        # which input axis carries the batch (for QUICK_MAX_BATCH): the batch symbol's
        self._batch_at = next(((i, a) for i, a, d in self._binders if d == BATCH), None)
        self.tier = "full"          # "quick" while the optimized code is being compiled
        self.tier_error = None      # why the optimized tier failed, if it did
        self._full_tier = None
        # the C call path (kiln/runtime/fastcall.py), where it could be built
        entry = fastcall.entry_type()
        self._entry = None if entry is None else entry(
            self._fn_address(compiled), ctypes.addressof(self._param_ptrs), self._dims_addr,
            len(self.symbols), tuple(self._in_np), tuple(t.rank for t in self.input_types),
            tuple(self._out_np), tuple(t.rank for t in self.output_types),
            (self._param_ptrs, self._dims))

    def _fn_address(self, compiled) -> int:
        return compiled.address(self._lowered.entry)

    # -- tiers ----------------------------------------------------------------------------
    def _compile_full_tier(self, text: str, opt_level: int, on_object, key=None) -> None:
        """Start compiling the optimized code on a thread; calls switch to it between
        two calls once it is ready (see ``compile``'s ``tiered``). The thread is not a
        daemon: the process waits for it at exit, so the compile cache gets the code."""
        self.tier = "quick"

        def work():
            try:
                full = jit(text, opt=opt_level, on_object=on_object, keep_texts=False)
                address = self._fn_address(full)
                fn = _ENTRY(address)
            except Exception as e:   # the quick tier keeps running: slower, still correct
                self.tier_error = e
                warnings.warn(f"kiln: the optimized tier failed to compile ({type(e).__name__}: "
                              f"{e}); running the quick tier", RuntimeWarning, stacklevel=1)
                return
            finally:
                if key is not None:
                    _OPTIMIZING.pop(key, None)
                _OPTIMIZERS.discard(self._full_tier)
            with self._lock:
                if self._entry is not None:     # waits for a call running the quick tier
                    self._entry.set_fn(address)
                self._compiled, self._fn, self.tier = full, fn, "full"

        self._full_tier = threading.Thread(target=work, name="kiln-optimize", daemon=False)
        if key is not None:
            _OPTIMIZING[key] = self._full_tier
        _OPTIMIZERS.add(self._full_tier)
        self._full_tier.start()

    def _big(self, arrays) -> bool:
        """A call on more samples than the quick tier serves (QUICK_MAX_BATCH)."""
        if self._batch_at is not None:
            i, axis = self._batch_at
            return arrays[i].shape[axis] > QUICK_MAX_BATCH
        return bool(arrays) and arrays[0].ndim > 0 and arrays[0].shape[0] > QUICK_MAX_BATCH

    def wait_optimized(self) -> "Executable":
        """Block until the optimized tier runs (at once if it already does)."""
        t = self._full_tier
        if t is not None:
            t.join()
        return self

    # -- code for debugging -------------------------------------------------------------
    @property
    def ir(self) -> str:
        return str(self.graph)

    @property
    def llvm_ir(self) -> str:
        return self.wait_optimized()._compiled.ll_before

    @property
    def llvm_ir_optimized(self) -> str:
        return self.wait_optimized()._compiled.ll_after

    @property
    def asm(self) -> str:
        return self.wait_optimized()._compiled.asm

    def memory_report(self, batch_size: int = 1, **symbols) -> dict:
        """Bytes of the arena at this batch size, the naive sum of every intermediate,
        and the lower bound (the most bytes that must be live at once)."""
        from ..passes.memory import report
        return report(self.graph, {BATCH: batch_size, **symbols})

    # -- running ------------------------------------------------------------------------
    def _check_inputs(self, xs) -> list:
        if len(xs) == 1 and isinstance(xs[0], (list, tuple)) and len(self.input_types) > 1:
            xs = tuple(xs[0])
        if len(xs) != len(self.input_types):
            raise ValueError(f"expected {len(self.input_types)} input(s) "
                             f"({', '.join(self.input_names)}), got {len(xs)}")
        arrays = []
        for name, t, x, npdt in zip(self.input_names, self.input_types, xs, self._in_np):
            a = x if type(x) is np.ndarray else np.asarray(x)
            if a.dtype.kind not in "biuf":
                raise ValueError(f"input '{name}': expected numeric data for {t.dtype} with shape "
                                 f"{_shape_str(t)}, got dtype {a.dtype} with shape {a.shape}")
            if a.ndim != t.rank:
                raise ValueError(f"input '{name}': expected shape {_shape_str(t)} (rank {t.rank}), "
                                 f"got shape {a.shape} (rank {a.ndim})")
            for d, n in zip(t.shape, a.shape):
                if d.__class__ is int and d != n:
                    raise ValueError(f"input '{name}': expected shape {_shape_str(t)}, "
                                     f"got shape {a.shape}")
            if a.dtype != npdt or not a.flags.c_contiguous:
                a = np.ascontiguousarray(a, dtype=npdt)
            arrays.append(a)
        return arrays

    def _bind(self, arrays) -> tuple:
        """Symbol values from the input shapes, in ``self.symbols`` order."""
        vals: dict = {}
        for i, axis, sym in self._binders:
            n = arrays[i].shape[axis]
            if vals.setdefault(sym, n) != n:
                raise ValueError(f"input '{self.input_names[i]}': symbol {sym} is {vals[sym]} "
                                 f"elsewhere, got {n} in shape {arrays[i].shape}")
        return tuple(vals[s] for s in self.symbols)

    def _arena(self, key: tuple) -> int:
        nbytes = self._arena_bytes.get(key)
        if nbytes is None:
            nbytes = self._arena_bytes[key] = self._lowered.arena_bytes.evaluate(
                dict(zip(self.symbols, key)))
        if nbytes + _ALIGN > self._arena_raw.size:
            self._arena_raw = np.empty(nbytes + _ALIGN, np.uint8)
            addr = self._arena_raw.ctypes.data
            self._arena_addr = addr + (-addr % _ALIGN)
        return self._arena_addr

    def __call__(self, *xs):
        # fast path: the inputs are contiguous arrays of the dtypes and shapes of the
        # last call -- checked and called in C (kiln/runtime/fastcall.py), else by one
        # pass of cheap checks here; otherwise validate and bind from scratch
        entry = self._entry
        if entry is not None:
            outs = entry(*xs)
            if outs is not NotImplemented:
                return outs
        last = self._last
        if entry is None and last is not None and len(xs) == len(last[0]):
            for a, shape, npdt in zip(xs, last[0], self._in_np):
                if (a.__class__ is not np.ndarray or a.shape != shape
                        or (a.dtype is not npdt and a.dtype != npdt) or not a.flags.c_contiguous):
                    break
            else:
                return self._run(xs, *last[1:])
        arrays = self._check_inputs(xs)
        key = self._bind(arrays)
        binding = dict(zip(self.symbols, key))
        out_shapes = [tuple(binding[d] if d.__class__ is str else d for d in t.shape)
                      for t in self.output_types]
        self._last = (tuple(a.shape for a in arrays), key, out_shapes)
        return self._run(arrays, key, out_shapes)

    def _run(self, arrays, key, out_shapes):
        if self.tier == "quick" and self._big(arrays):
            self.wait_optimized()
        if self._entry is not None:   # sets the C path up for these shapes, and runs
            flat = tuple(d for shape in out_shapes for d in shape)
            with self._lock:     # the arena may be replaced: one slow-path call at a time
                arena_at = self._arena(key)
                return self._entry.run(tuple(arrays), flat, key, self._arena_raw, arena_at)
        outs = [np.empty(shape, dtype=npdt) for shape, npdt in zip(out_shapes, self._out_np)]
        with self._lock:   # the pointer tables, dims and arena are shared by all calls
            in_ptrs, out_ptrs = self._in_ptrs, self._out_ptrs
            for i, a in enumerate(arrays):
                in_ptrs[i] = _data(a)
            for i, o in enumerate(outs):
                out_ptrs[i] = _data(o)
            if key != self._set_for:     # dims and arena as the last call left them, else:
                for i, v in enumerate(key):
                    self._dims[i] = v
                self._arena_at = self._arena(key)
                self._set_for = key
            self._fn(in_ptrs, out_ptrs, self._param_ptrs, self._arena_at, self._dims_addr)
        return outs[0] if len(outs) == 1 else tuple(outs)


def compile(model_or_graph, target: str = "cpu", dump_dir=None, verify: bool = True,
            opt_level: int = 3, passes: str | list = "inference",
            threads: int | None = None, cache: bool | None = None,
            profile: bool | None = None, tiered: bool | None = None) -> Executable:
    """Compile a model (anything with ``_lower()``) or an IR graph for ``target``
    (``"cuda"``: a CudaExecutable with the same call interface, see cuda_executable.py;
    ``threads``, ``opt_level`` and ``cache`` apply to the CPU only).

    ``dump_dir`` (or the ``KILN_DUMP_DIR`` environment variable) receives the IR after
    every pass (``00-lower.kir``, ``01-constfold.kir``, ...), the LLVM IR before and
    after optimization and the assembly. ``threads``: how many threads the generated
    code may use (default: ``$KILN_NUM_THREADS``, else the cores available). ``cache``:
    reuse machine code compiled before for the same graph and CPU (default: on unless
    ``KILN_CACHE=0``; see kiln/runtime/cache.py). ``profile``: count the time of every
    kernel (default: ``$KILN_PROFILE``); read it with ``kiln.profile.report(exe)``, see
    kiln/runtime/profile.py. Profiled code is never cached.

    ``tiered`` (default: on for the ``"inference"`` pipeline, unless
    ``KILN_TIERED=0``; never for training): on a compile-cache miss, first compile a
    quick tier (two function passes, fast instruction selection: 3-9x faster to
    compile, code 3-10x slower) so the first call runs at once, and compile the
    optimized code (``opt_level``) on a background thread; calls switch to it as soon
    as it is ready (``exe.tier``, ``exe.wait_optimized()``), and it is what the compile
    cache stores. A call on more than QUICK_MAX_BATCH samples waits for the optimized
    code instead. The tiers give the same results bit for bit: every kernel fixes its
    rounding in the IR (explicit FMAs, sums in an order of their own; no
    contract/reassoc flags for the optimizer to use or not). Off with ``profile``,
    ``dump_dir`` or ``opt_level=0``.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    dump_dir = dump_dir or os.environ.get("KILN_DUMP_DIR") or None
    if target == "cuda":   # numba.cuda kernels; see kiln/runtime/cuda_executable.py
        from .cuda_executable import compile_cuda
        return compile_cuda(model_or_graph, passes, verify, dump_dir)
    threads_mod.prepare()          # the thread pool's C build, if due, runs beside what follows
    fastcall.prepare()             # ... and the call extension's
    threads_mod.thread_count(threads)   # a bad ``threads`` fails before any work
    pm, optimized = optimize_graph(model_or_graph, passes, verify, dump_dir, "kiln.compile")
    pool = None

    def runtime_symbols():      # before machine code is made: kiln_parallel_for must resolve
        nonlocal pool
        if pool is None:
            pool = threads_mod.pool(threads)
            threads_mod.ensure_symbols()

    profile = profile_mod.enabled() if profile is None else bool(profile)
    use_cache = (cache_mod.enabled() if cache is None else cache) and not profile
    key = cache_mod.key(str(optimized), opt_level) if use_cache else None
    obj = cache_mod.load(key) if key else None
    pending = _OPTIMIZING.get(key) if obj is None and key else None
    if pending is not None:             # this graph's optimized tier is on its way: wait
        pending.join()
        obj = cache_mod.load(key)
    if obj is not None:
        lowered = LoweredModule(None, "kiln_main", optimized.symbols, arena_size(optimized),
                                list(optimized.params), [])
        runtime_symbols()
        compiled = link_object(obj, lambda: optimized_texts(lower_graph(optimized).module, opt_level),
                               opt=opt_level)
    else:
        lowered = lower_graph(optimized, profile=profile)
        on_object = (lambda o: cache_mod.store(key, o)) if key else None
        tiered = (tiers_enabled() and passes == "inference") if tiered is None else tiered
        if tiered and not profile and not dump_dir and opt_level > 0:
            text = module_text(lowered.module)
            quick = jit_quick(text, before_codegen=runtime_symbols, keep_texts=False)
            exe = Executable(optimized, lowered, quick, pm.timings, pool)
            exe._compile_full_tier(text, opt_level, on_object, key)
            exe.cache_hit = False
            return exe
        # the optimized module's text is printed only for dumps (else made again if asked)
        compiled = jit(lowered.module, opt=opt_level, on_object=on_object,
                       before_codegen=runtime_symbols, keep_texts=bool(dump_dir))
    if dump_dir:
        write_code_dumps(dump_dir, len(pm.stages), compiled)
    exe = Executable(optimized, lowered, compiled, pm.timings, pool)
    exe.cache_hit = obj is not None
    return exe


def tiers_enabled() -> bool:
    """Unless ``KILN_TIERED`` is 0/false/no/off."""
    return os.environ.get("KILN_TIERED", "1").lower() not in ("0", "false", "no", "off")


def optimize_graph(model_or_graph, passes="inference", verify=True, dump_dir=None,
                   caller="kiln.compile"):
    """Lower a model (anything with ``_lower()``) or take an IR graph, and run the pass
    pipeline on it: the front half shared by ``kiln.compile`` and ``kiln.export``.
    Returns (the PassManager, the optimized graph)."""
    if isinstance(model_or_graph, Graph):
        graph = model_or_graph
    elif hasattr(model_or_graph, "_lower"):
        graph = model_or_graph._lower()
    else:
        raise TypeError(f"{caller} expects a kiln model or a kiln.ir.Graph, "
                        f"got {type(model_or_graph).__name__}")
    names = pipeline(passes) if isinstance(passes, str) else list(passes)
    pm = PassManager(names, verify=verify, dump_dir=dump_dir)
    return pm, pm.run(graph)


def write_code_dumps(dump_dir, first_index: int, code):
    """LLVM IR before/after optimization and the assembly, numbered after the IR stages."""
    d, k = Path(dump_dir), first_index
    (d / f"{k:02d}-llvm.ll").write_text(code.ll_before)
    (d / f"{k + 1:02d}-llvm-opt.ll").write_text(code.ll_after)
    (d / f"{k + 2:02d}-asm.s").write_text(code.asm)
