"""The ``target="cuda"`` executable: the same call interface as the CPU Executable,
running generated numba.cuda kernels (kiln/codegen/cuda) on the device.

Device memory: parameters and constants are uploaded once, when the executable is
made, and stay on the device; the arena (size: the memory plan's polynomial at the
batch size) is allocated on the first call and grown when a larger batch comes;
``exe(x)`` copies the inputs in, launches every kernel in order and copies the
outputs out -- the only transfers. State updates (a training step's ``param <-
value``) are device-to-device copies after the outputs, so a compiled training step
keeps its weights and optimizer slots on the device across calls.

Parameters from the host: ``exe.params`` is a mapping whose lookups download one
parameter (a fresh, read-only host copy each time: writing into it would change
nothing on the device, so it raises); ``exe.get_param`` downloads one (writable),
``exe.set_param`` uploads one, and ``exe.copy_param_from(other, name)`` copies one
from another CudaExecutable device-to-device (no host round trip) -- how
``Model.compile(target="cuda")``'s eval step gets the train step's current weights.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from ..codegen.cuda import SIMULATOR, LaunchConfig, compile_kernels, lower_graph
from ..codegen.cuda.device import cuda_module, is_simulator
from ..ir.graph import Graph
from ..ir.types import Affine, is_symbol

_ALIGN = 256
#: passes of the CUDA pipelines: the CPU ones without ``layout`` (packed GEMM panels)
CUDA_PIPELINES = {"inference": ["simplify", "constfold", "dce", "fusion", "memory"],
                  "training": ["simplify", "constfold", "dce", "fusion", "memory"]}


class _Params(Mapping):
    """``exe.params``: the parameter names, each looked up as a fresh read-only host
    copy of the device buffer (one download per lookup; write with ``set_param``)."""

    def __init__(self, exe):
        self._exe = exe

    def __getitem__(self, name):
        if name not in self._exe._dparams:
            raise KeyError(name)
        a = self._exe.get_param(name)
        a.flags.writeable = False
        return a

    def __contains__(self, name):
        return name in self._exe._dparams

    def __iter__(self):
        return iter(self._exe._param_names)

    def __len__(self):
        return len(self._exe._param_names)


class CudaExecutable:
    target = "cuda"

    def __init__(self, graph: Graph, program, cuda, timings=()):
        from .executable import Executable
        self._check_inputs = Executable._check_inputs.__get__(self)
        self._bind = Executable._bind.__get__(self)
        self.graph = graph
        self.program = program
        self.cuda = cuda
        self.simulator = is_simulator(cuda)
        self.timings = list(timings)
        self.input_types = [v.type for v in graph.inputs]
        self.input_names = [v.name for v in graph.inputs]
        self.output_types = [v.type for v in graph.outputs]
        self.symbols = program.symbols
        self._in_np = [t.dtype.np for t in self.input_types]
        self._out_np = [t.dtype.np for t in self.output_types]
        self._binders = [(i, axis, d) for i, t in enumerate(self.input_types)
                         for axis, d in enumerate(t.shape) if is_symbol(d)]
        self._kernels = compile_kernels(program, cuda)          # compiled once, cached here
        self._param_names = list(graph.params)
        self._dparams: dict = {}
        for name in self._param_names:
            val = graph.param_values.get(name)
            if val is None:
                raise ValueError(f"param %{name} has no value; give the graph its parameter "
                                 f"values before compiling")
            host = np.ascontiguousarray(val, dtype=graph.params[name].type.dtype.np).reshape(-1)
            self._dparams[name] = cuda.to_device(host)
        self._consts = {n.outputs[0]: cuda.to_device(np.ascontiguousarray(n.attrs["value"]).reshape(-1))
                        for n in graph.nodes if n.op.family == "constant"}
        self._arena = None
        self._arena_size = 0
        self._launches: dict = {}
        self._lock = threading.Lock()

    # -- parameters -----------------------------------------------------------------------
    @property
    def params(self) -> Mapping:
        """The parameters by name: each lookup downloads one, shaped as in the graph, as
        a read-only host copy (``dict(exe.params)`` downloads them all)."""
        return _Params(self)

    def get_param(self, name: str) -> np.ndarray:
        t = self.graph.params[name].type
        return self._dparams[name].copy_to_host().reshape(t.shape)

    def set_param(self, name: str, value) -> None:
        t = self.graph.params[name].type
        host = np.ascontiguousarray(value, dtype=t.dtype.np).reshape(-1)
        if host.size != self._dparams[name].size:
            raise ValueError(f"param %{name}: expected {t}, got shape {np.shape(value)}")
        self._dparams[name].copy_to_device(host)

    def copy_param_from(self, other: "CudaExecutable", name: str, src: str | None = None) -> None:
        """Copy parameter ``src`` (default: the same name) of another CudaExecutable into
        this one's ``name``, device-to-device (no transfer through the host)."""
        src = name if src is None else src
        t, u = self.graph.params[name].type, other.graph.params[src].type
        if t.dtype != u.dtype or self._dparams[name].size != other._dparams[src].size:
            raise ValueError(f"param %{name}: expected {t}, the source %{src} is {u}")
        self._dparams[name].copy_to_device(other._dparams[src])

    # -- code for debugging ---------------------------------------------------------------
    @property
    def ir(self) -> str:
        return str(self.graph)

    @property
    def cuda_source(self) -> str:
        return self.program.source()

    def launches(self, batch_size: int = 1, **symbols) -> list:
        """(kernel name, grid, block) of every launch at this batch size."""
        b = self._bindings_for(batch_size, symbols)
        return [(k.name, *k.launch_dims(b)) for k, _ in self.program.steps]

    def _bindings_for(self, batch_size, symbols):
        b = {s: batch_size for s in self.symbols}
        b.update(symbols)
        return b

    # -- running --------------------------------------------------------------------------
    def _arena_for(self, bindings):
        nbytes = self.program.arena_bytes.evaluate(bindings)
        if self._arena is None or nbytes > self._arena_size:
            self._arena = self.cuda.device_array(max(nbytes, 1) + _ALIGN, np.uint8)
            self._arena_size = nbytes
        return self._arena

    def __call__(self, *xs):
        arrays = self._check_inputs(xs)
        key = self._bind(arrays)
        bindings = dict(zip(self.symbols, key))
        with self._lock:
            return self._run(arrays, key, bindings)

    def _run(self, arrays, key, bindings):
        cuda, prog, g = self.cuda, self.program, self.graph
        storage = prog.storage
        arena = self._arena_for(bindings)
        d_in = [cuda.to_device(a.reshape(-1)) for a in arrays]
        out_shapes = [t.concrete(bindings) for t in self.output_types]
        d_out = [cuda.device_array(int(np.prod(s, dtype=np.int64)), npdt)
                 for s, npdt in zip(out_shapes, self._out_np)]
        bufs: dict = {}

        def buf(v):
            b = bufs.get(v)
            if b is not None:
                return b
            kind = storage[v]
            if kind[0] == "input":
                b = d_in[kind[1]]
            elif kind[0] == "param":
                b = self._dparams[self._param_names[kind[1]]]
            elif kind[0] == "output":
                b = d_out[kind[1]]
            elif kind[0] == "const":
                b = self._consts[v]
            elif kind[0] == "alias":
                b = buf(kind[1])
            else:
                off = prog.offsets[v].evaluate(bindings)
                n = Affine.product(v.type.shape).evaluate(bindings)
                b = arena[off:off + n * v.type.dtype.itemsize].view(v.type.dtype.np)
            bufs[v] = b
            return b

        launches = self._launches.get(key)
        if launches is None:     # per symbol binding: grid/block, or None (nothing to compute)
            launches = self._launches[key] = [
                (k.launch_dims(bindings), k.zero_dims(bindings) if k.zero_grid else None)
                if Affine.product(n.outputs[0].type.shape).evaluate(bindings) else None
                for k, n in prog.steps]
        for (k, n), (fn, zero), dims in zip(prog.steps, self._kernels, launches):
            if dims is not None:
                if zero is not None:     # scatter: the result starts at zero
                    zero[dims[1]](buf(n.outputs[0]), *key)
                fn[dims[0]](*[buf(v) for v in (*n.outputs, *n.inputs)],
                            *k.scratch_views(arena, bindings), *key)   # scan: its scratch
        outs = []
        for k, (v, shape) in enumerate(zip(g.outputs, out_shapes)):
            src = d_out[k] if storage.get(v) == ("output", k) else buf(v)
            outs.append(src.copy_to_host().reshape(shape))
        for p, v in g.updates:        # after every output was read, as on the CPU
            if buf(p) is not buf(v):
                buf(p).copy_to_device(buf(v))
        return outs[0] if len(outs) == 1 else tuple(outs)


def compile_cuda(model_or_graph, passes="inference", verify=True, dump_dir=None,
                 config: LaunchConfig | None = None) -> CudaExecutable:
    """``kiln.compile(..., target="cuda")``: optimize (the CPU pipeline without the
    ``layout`` pass), generate and compile the kernels. Raises CudaUnavailable when
    there is no GPU and no simulator, NotImplementedError naming the ops the GPU
    cannot run yet (nothing falls back to the CPU)."""
    from pathlib import Path
    from .executable import optimize_graph
    cuda = cuda_module()
    if isinstance(passes, str):
        if passes not in CUDA_PIPELINES:
            raise ValueError(f"unknown pipeline {passes!r} (known pipelines: "
                             f"{', '.join(sorted(CUDA_PIPELINES))})")
        passes = list(CUDA_PIPELINES[passes])
    pm, optimized = optimize_graph(model_or_graph, passes, verify, dump_dir, "kiln.compile")
    if config is None:
        config = SIMULATOR if is_simulator(cuda) else LaunchConfig()
    program = lower_graph(optimized, config)
    if dump_dir:
        Path(dump_dir, f"{len(pm.stages):02d}-cuda.py").write_text(program.source())
    return CudaExecutable(optimized, program, cuda, pm.timings)


def cuda_source(model_or_graph, passes="inference", config: LaunchConfig | None = None) -> str:
    """The generated kernel source and launch configuration, without a device (``kiln dump --cuda``)."""
    from .executable import optimize_graph
    names = list(CUDA_PIPELINES[passes]) if isinstance(passes, str) else list(passes)
    _, optimized = optimize_graph(model_or_graph, names, True, None, "kiln dump")
    return lower_graph(optimized, config or LaunchConfig()).source()


__all__ = ["CudaExecutable", "compile_cuda", "cuda_source", "CUDA_PIPELINES"]
