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
from pathlib import Path

import numpy as np

from ..codegen.llvm import jit, lower_graph
from ..ir.graph import Graph
from ..ir.interpreter import bind_symbols
from ..ir.types import BATCH, TensorType, is_symbol
from ..passes import PassManager, pipeline

_ALIGN = 64
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p)
TARGETS = ("cpu",)


def _shape_str(t: TensorType) -> str:
    dims = ["None" if d == BATCH else str(d) for d in t.shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class Executable:
    def __init__(self, graph: Graph, lowered, compiled, timings=()):
        self.graph = graph
        self.input_types = [v.type for v in graph.inputs]
        self.input_names = [v.name for v in graph.inputs]
        self.output_types = [v.type for v in graph.outputs]
        self.symbols = lowered.symbols
        self.timings = list(timings)
        self._lowered = lowered
        self._compiled = compiled
        self._fn = _ENTRY(compiled.address(lowered.entry))
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
        self._lock = threading.Lock()

    # -- code for debugging -------------------------------------------------------------
    @property
    def ir(self) -> str:
        return str(self.graph)

    @property
    def llvm_ir(self) -> str:
        return self._compiled.ll_before

    @property
    def llvm_ir_optimized(self) -> str:
        return self._compiled.ll_after

    @property
    def asm(self) -> str:
        return self._compiled.asm

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
        for name, t, x in zip(self.input_names, self.input_types, xs):
            a = np.asarray(x)
            if a.dtype.kind not in "biuf":
                raise ValueError(f"input '{name}': expected numeric data for {t.dtype} with shape "
                                 f"{_shape_str(t)}, got dtype {a.dtype} with shape {a.shape}")
            if a.ndim != t.rank:
                raise ValueError(f"input '{name}': expected shape {_shape_str(t)} (rank {t.rank}), "
                                 f"got shape {a.shape} (rank {a.ndim})")
            for d, n in zip(t.shape, a.shape):
                if not is_symbol(d) and d != n:
                    raise ValueError(f"input '{name}': expected shape {_shape_str(t)}, "
                                     f"got shape {a.shape}")
            arrays.append(np.ascontiguousarray(a, dtype=t.dtype.np))
        return arrays

    def _arena(self, nbytes: int) -> int:
        if nbytes + _ALIGN > self._arena_raw.size:
            self._arena_raw = np.empty(nbytes + _ALIGN, np.uint8)
            addr = self._arena_raw.ctypes.data
            self._arena_addr = addr + (-addr % _ALIGN)
        return self._arena_addr

    def __call__(self, *xs):
        arrays = self._check_inputs(xs)
        try:
            bindings = bind_symbols(self.graph, arrays)
        except ValueError as e:
            raise ValueError(str(e).replace("%", "'", 1)) from None
        outs = [np.empty(t.concrete(bindings), dtype=t.dtype.np) for t in self.output_types]
        dims = np.array([bindings[s] for s in self.symbols] or [0], dtype=np.int64)
        in_ptrs = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        out_ptrs = (ctypes.c_void_p * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        with self._lock:
            arena = self._arena(self._lowered.arena_bytes.evaluate(bindings))
            self._fn(in_ptrs, out_ptrs, self._param_ptrs, arena, dims.ctypes.data)
        return outs[0] if len(outs) == 1 else tuple(outs)


def compile(model_or_graph, target: str = "cpu", dump_dir=None, verify: bool = True,
            opt_level: int = 3, passes: str | list = "inference") -> Executable:
    """Compile a model (anything with ``_lower()``) or an IR graph for ``target``.

    ``dump_dir`` (or the ``KILN_DUMP_DIR`` environment variable) receives the IR after
    every pass (``00-lower.kir``, ``01-constfold.kir``, ...), the LLVM IR before and
    after optimization and the assembly.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)} "
                         f"(the 'cuda' target comes with GPU code generation)")
    if isinstance(model_or_graph, Graph):
        graph = model_or_graph
    elif hasattr(model_or_graph, "_lower"):
        graph = model_or_graph._lower()
    else:
        raise TypeError(f"kiln.compile expects a kiln model or a kiln.ir.Graph, "
                        f"got {type(model_or_graph).__name__}")
    dump_dir = dump_dir or os.environ.get("KILN_DUMP_DIR") or None
    names = pipeline(passes) if isinstance(passes, str) else list(passes)
    pm = PassManager(names, verify=verify, dump_dir=dump_dir)
    optimized = pm.run(graph)
    lowered = lower_graph(optimized)
    compiled = jit(lowered.module, opt=opt_level)
    if dump_dir:
        d = Path(dump_dir)
        k = len(pm.stages)
        (d / f"{k:02d}-llvm.ll").write_text(compiled.ll_before)
        (d / f"{k + 1:02d}-llvm-opt.ll").write_text(compiled.ll_after)
        (d / f"{k + 2:02d}-asm.s").write_text(compiled.asm)
    return Executable(optimized, lowered, compiled, pm.timings)
