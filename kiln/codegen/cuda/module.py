"""Assemble a graph's CUDA program: one generated kernel per node (``kernels.py``), the
storage of every value and the arena offsets of the memory plan, and compilation of
the kernel source with numba.cuda (once per program).

Storage follows kiln/passes/memory.py exactly as the CPU backend does: inputs,
outputs and parameters are device arrays of their own; ``constant`` nodes are
uploaded once; ``reshape`` results share their operand's buffer (every kernel reads
flat 1-D arrays, so an alias is the same array); intermediates are views into one
device arena at the plan's offsets (polynomials in the symbols). A ``scan`` is one
persistent kernel (kernels_scan.py) whose scratch (its body's arena, carry and
staging buffers) is arena bytes past every slot live while it runs
(``scratch_offsets``); ``arena_bytes`` includes it and the kernel gets typed views
of it (``Kernel.scratch_views``) after its operands.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir.graph import Graph
from ...ir.types import Poly
from ...passes.memory import classify, plan_memory, scratch_offsets, scratch_size, slot_size
from .kernels import LaunchConfig, emit_kernel, unsupported_ops


@dataclass
class CudaProgram:
    graph: Graph
    symbols: tuple
    storage: dict
    offsets: dict
    arena_bytes: Poly
    steps: list            # (Kernel, node) in call order
    config: LaunchConfig

    def source(self) -> str:
        """Every kernel's source with its node and launch configuration (``kiln dump --cuda``)."""
        from ...ir.printer import value_names
        names = value_names(self.graph)
        parts = []
        for k, n in self.steps:
            parts.append(f"# {k.name}: {k.shape} kernel for {_node_line(n, names)}\n"
                         f"# launch: {k.launch_text}\n{k.source}")
        return "\n".join(parts)


def _node_line(n, names) -> str:
    outs = ", ".join(f"{names.get(o, '%?')}: {o.type}" for o in n.outputs)
    ins = ", ".join(names.get(v, "%?") for v in n.inputs)
    return f"{outs} = {n.op.name}({ins})"


def lower_graph(g: Graph, config: LaunchConfig | None = None) -> CudaProgram:
    """Generate the kernels of ``g`` (optimized, without the CPU-only ``layout`` pass).
    Raises NotImplementedError naming every op that has no CUDA kernel yet."""
    config = config or LaunchConfig()
    bad = unsupported_ops(g.nodes)
    if bad:
        raise NotImplementedError(
            f"the CUDA backend has no kernel yet for op(s): {', '.join(bad)} (graph {g.name}); "
            f"supported on the GPU: elementwise ops, fused elementwise groups, transpose, "
            f"slice, pad, concat, gather, scatter_add, argmax, random_uniform, "
            f"matmul (+ fused epilogue), conv2d, conv2d_transpose, max/avg_pool2d (+ fused "
            f"epilogue), conv2d_backprop_kernel, max/avg_pool2d_grad, "
            f"reduce_sum/mean/max/min (+ fused prologue), softmax, scan (one persistent "
            f"kernel; its body: the ops above but softmax, scatter_add and nested scans). "
            f"Use target='cpu' for this model")
    storage = classify(g)
    offsets = g.arena if g.arena is not None else plan_memory(g)
    scratch = scratch_offsets(g, offsets)
    steps = []
    for idx, n in enumerate(g.nodes):
        if n.op.family in ("constant", "reshape"):
            continue
        if n.op.family == "scan":
            from .kernels_scan import emit_scan
            k = emit_scan(f"k{idx}_scan", n, g.symbols, config, scratch[n])
        else:
            k = emit_kernel(f"k{idx}_{n.op.name}", n, g.symbols, config)
        steps.append((k, n))
    size = Poly.termwise_max([off + slot_size(v) for v, off in offsets.items()]
                             + [off + scratch_size(n) for n, off in scratch.items()])
    return CudaProgram(g, tuple(g.symbols), storage, offsets, size, steps, config)


def compile_kernels(program: CudaProgram, cuda) -> list:
    """(kernel, zeroing kernel or None) numba.cuda objects for ``program.steps`` (each
    source exec'd once; numba
    compiles a kernel for the device on its first launch and keeps it). The scalar type
    names the source uses (``float32(x)``, ``cuda.shared.array(n, float32)``) are numba's
    types on a GPU, numpy's under the simulator (which runs the source as Python)."""
    import math

    from .device import is_simulator
    if is_simulator(cuda):
        import numpy as types
        extra = {"uint64": lambda v: types.uint64(int(v) & 0xFFFF_FFFF_FFFF_FFFF)}  # wraps
    else:
        from numba import types
        extra = {}
    fns = []
    for k, _ in program.steps:
        ns = {"cuda": cuda, "math": math, **{t: getattr(types, t) for t in (
            "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint64")}, **extra}
        exec(compile(k.source, f"<kiln-cuda {k.name}>", "exec"), ns)  # noqa: S102
        fns.append((ns[k.name], ns.get(f"{k.name}_zero")))
    return fns
