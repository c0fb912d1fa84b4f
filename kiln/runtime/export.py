"""Ahead-of-time export: a compiled model as a self-contained shared library with a C API.

    kiln.export(model, "out", name="mlp")      # or: kiln export models.py:mlp -o out

writes, into ``out/``:

- ``libmlp.so``   the model: needs only libc, libm and pthreads at run time;
- ``mlp.h``       its C API, documented (create / run / destroy / last_error, queries);
- ``main.c``      an example program, its build command in a comment;
- ``mlp.json``    the same metadata for tools (tensors, parameter offsets, hashes);
- ``mlp.weights`` (``weights="file"``) the weights blob, read and SHA-256-checked at
  create time, instead of embedding it in the library;
- ``libmlp.a``    (``static=True``) the same objects as a static archive.

How it is built. The graph goes through the SAME front half as ``kiln.compile``
(``optimize_graph``: lowering, the pass pipeline, the memory plan) and the SAME
``lower_graph`` codegen; only the symbol prefix of the entry differs (``mlp__kiln_``).
``emit_object`` runs the JIT's parse/verify/O3 path for a target machine that differs
from the JIT's only in relocation and code model (pic/default), so with
``target_cpu="host"`` the optimized LLVM IR is the JIT's and the outputs are bit for
bit those of ``kiln.compile``. Around that object, a small generic C file
(kiln/runtime/c/kiln_model.c, compiled with the system ``cc`` against tables
generated per model) implements the API: argument checks, error messages,
weights loading and verification, workspace handling. C rather than emitted LLVM IR
because it is code a user may need to read and audit (error paths, file I/O, a
SHA-256), it is the same for every model, and ``cc`` is needed anyway to link.
The weights are a hidden, 64-byte aligned read-only symbol emitted with ``.incbin``
(no size limit, no compile time spent on a huge initializer). The thread pool the
generated code calls (kiln/runtime/c/kiln_threads.c, the JIT's) is linked in, one pool
per handle.

The target: ``kiln.target.using(target_cpu)`` is in force while the passes and the
kernels run, so panel widths, vector widths and FMA follow the target CPU, not the
machine exporting.

Symbols: the API functions are the library's only exported symbols (``-fvisibility=
hidden``; the entry, the weights and the thread pool are hidden); kernels are internal.
Every global symbol, in the archive too, starts with the model's name (the pool's are
renamed ``NAME__kiln_*``: ``-D`` for its C source, ``objcopy --redefine-sym`` for the
model object), so several models link into one program.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..codegen.llvm import lower_graph
from .. import target as targets
from ..codegen.llvm.target import ObjectCode, emit_object
from ..ir.graph import Graph
from ..ir.types import BATCH
from .executable import optimize_graph, write_code_dumps
from .export_c import (ModelABI, Param, Tensor, example_main, meta_header, public_header,
                       weights_asm)

ALIGN = 64
TARGET_CPUS = ("host", *targets.NAMED)
WEIGHTS_MODES = ("embedded", "file")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# the thread pool's external names (kiln/runtime/c/kiln_threads.c), prefixed per model
POOL_SYMBOLS = ("kiln_parallel_for", "kiln_pool_create", "kiln_pool_destroy", "kiln_pool_threads")


class ExportError(RuntimeError):
    """The C compiler or linker failed (the message holds its command and output)."""


@dataclass
class Exported:
    """What ``kiln.export`` wrote, and how it was built."""
    name: str
    outdir: Path
    library: Path
    header: Path
    main_c: Path
    metadata: Path
    weights_file: Path | None
    archive: Path | None
    abi: ModelABI
    code: ObjectCode                  # the object, LLVM IR before/after O3, assembly
    graph: Graph                      # the optimized graph that was compiled
    timings: dict = field(default_factory=dict)

    @property
    def files(self) -> list:
        return [p for p in (self.library, self.header, self.main_c, self.metadata,
                            self.weights_file, self.archive) if p is not None]


def default_name(graph: Graph) -> str:
    n = re.sub(r"[^A-Za-z0-9_]", "_", graph.name)
    return n if _NAME.match(n) else f"model_{n}"


def export(model_or_graph, outdir, name: str | None = None, target_cpu: str = "host",
           weights: str = "embedded", static: bool = False, opt_level: int = 3,
           passes: str | list = "inference", dump_dir=None, cc: str | None = None) -> Exported:
    """Compile a model (or an IR graph) for inference and write it to ``outdir`` as
    ``lib<name>.so`` + ``<name>.h`` + ``main.c`` (see the module docstring).

    name: the C symbol prefix (an identifier; default: the graph's name).
    target_cpu: "host" (fastest here; the JIT's code, bit for bit), "generic" (any
        x86-64: SSE2, no AVX, no FMA) or "x86-64-v3" (AVX2 + FMA); see kiln/target.py.
    weights: "embedded" (in the library) or "file" (``<name>.weights`` next to it).
    static: also write ``lib<name>.a``.
    cc: the C compiler (default: $CC, else ``cc``).
    """
    t0 = time.perf_counter()
    if target_cpu not in TARGET_CPUS:
        raise ValueError(f"unknown target CPU {target_cpu!r}; expected one of {', '.join(TARGET_CPUS)}")
    if weights not in WEIGHTS_MODES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS_MODES)}, got {weights!r}")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        raise ValueError(f"export name must be a C identifier (letters, digits, '_'), got {name!r}")
    compiler = _find_cc(cc)
    if isinstance(model_or_graph, Graph):
        _reject_updates(model_or_graph)
    with targets.using(target_cpu):   # the layout pass and kernels read the target
        pm, graph = optimize_graph(model_or_graph, passes, True, dump_dir, "kiln.export")
    _reject_updates(graph)
    name = default_name(graph) if name is None else name
    others = [s for s in graph.symbols if s != BATCH]
    if others:
        raise ValueError(f"kiln.export: graph @{graph.name} has symbolic dimensions "
                         f"{', '.join(others)} besides the batch dimension {BATCH}; an exported "
                         f"model's only run-time dimension is the batch size")
    t1 = time.perf_counter()

    with targets.using(target_cpu):
        lowered = lower_graph(graph, prefix=f"{name}__kiln_")
    code = emit_object(lowered.module, cpu=target_cpu, opt=opt_level)
    if dump_dir:
        write_code_dumps(dump_dir, len(pm.stages), code)
    t2 = time.perf_counter()

    blob, params = _pack_params(graph, lowered.param_names)
    import kiln   # for __version__ (kiln/__init__.py imports this module)
    abi = ModelABI(
        name=name, kiln_version=kiln.__version__, target_cpu=target_cpu,
        llvm_cpu=targets.get(target_cpu).cpu,
        inputs=[Tensor.of(v.name, v.type) for v in graph.inputs],
        outputs=[Tensor.of(f"output_{k}", v.type) for k, v in enumerate(graph.outputs)],
        params=params, weights_bytes=len(blob), weights_sha256=hashlib.sha256(blob).hexdigest(),
        embedded=weights == "embedded", arena_coeffs=_arena_coeffs(lowered.arena_bytes),
        has_batch=BATCH in graph.symbols, source_graph=graph.name)

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"kiln-export-{name}-") as tmp:
        objects, archive_members = _build_objects(Path(tmp), abi, code, blob, compiler)
        lib = out / f"lib{name}.so"
        _run([compiler, "-shared", "-o", str(lib), *objects, f"-Wl,-soname,lib{name}.so",
              "-pthread", "-Wl,--as-needed", "-Wl,-z,noexecstack", "-Wl,--no-undefined", "-lm"])
        archive = None
        if static:
            archive = out / f"lib{name}.a"
            archive.unlink(missing_ok=True)
            _run([_tool("ar"), "rcs", str(archive), *archive_members])
    header = out / f"{name}.h"
    header.write_text(public_header(abi))
    main_c = out / "main.c"
    template = resources.files("kiln.runtime").joinpath("c/main.c.in").read_text()
    main_c.write_text(example_main(abi, template))
    weights_file = None
    if weights == "file":
        weights_file = out / f"{name}.weights"
        weights_file.write_bytes(blob)
    metadata = out / f"{name}.json"
    metadata.write_text(json.dumps(abi.json(), indent=1) + "\n")
    t3 = time.perf_counter()
    return Exported(name, out, lib, header, main_c, metadata, weights_file, archive, abi, code,
                    graph, {"passes": t1 - t0, "codegen": t2 - t1, "c_build": t3 - t2,
                            "total": t3 - t0})


# -- pieces -----------------------------------------------------------------------------

def _reject_updates(g: Graph):
    if g.updates:
        names = ", ".join(f"%{p.name}" for p, _ in g.updates)
        raise ValueError(f"kiln.export: graph @{g.name} updates parameters in place ({names}): "
                         f"it is a training graph. Export the inference graph (the model, or "
                         f"kiln.lower(model)); exported libraries never change their weights")


def _find_cc(cc):
    cc = cc or os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise ExportError(f"kiln.export needs a C compiler and linker: {cc!r} was not found "
                          f"(install gcc or clang, or set CC)")
    return path


def _pack_params(g: Graph, names) -> tuple:
    """The weights blob: every parameter (in the entry's ``params`` order) C-contiguous
    at a 64-byte aligned offset; zero padding between."""
    chunks, params, off = [], [], 0
    for pname in names:
        val = g.param_values.get(pname)
        t = g.params[pname].type
        if val is None:
            raise ValueError(f"param %{pname} has no value; give the graph its parameter values "
                             f"before exporting")
        a = np.ascontiguousarray(val, dtype=t.dtype.np)
        pad = -off % ALIGN
        chunks.append(bytes(pad))
        off += pad
        data = a.tobytes()
        params.append(Param(pname, t.dtype, tuple(a.shape), off, len(data)))
        chunks.append(data)
        off += len(data)
    return b"".join(chunks), params


def _arena_coeffs(poly) -> list:
    """Arena bytes as coefficients by power of the batch size."""
    coeffs: dict = {}
    for syms, c in poly.terms.items():
        if any(s != BATCH for s in syms):
            raise ValueError(f"arena size {poly} depends on symbols other than {BATCH}")
        coeffs[len(syms)] = coeffs.get(len(syms), 0) + c
    if any(c < 0 for c in coeffs.values()):
        raise AssertionError(f"arena size {poly} has a negative coefficient")
    return [coeffs.get(k, 0) for k in range(max(coeffs, default=0) + 1)]


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise ExportError(f"kiln.export needs {name} (GNU binutils) next to the C compiler")
    return path


def _run(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ExportError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r


def _build_objects(tmp: Path, abi: ModelABI, code: ObjectCode, blob: bytes, cc: str):
    """Compile the pieces into objects in ``tmp``: the model (llvmlite), the C runtime
    shim, and (embedded weights) the weights blob. Returns (objects for the .so,
    members for the .a) -- the same files."""
    n = abi.name
    model_o = tmp / f"{n}_model.o"
    model_o.write_bytes(code.obj)
    (tmp / f"{n}.h").write_text(public_header(abi))
    (tmp / "kiln_model_meta.h").write_text(meta_header(abi))
    shim_src = tmp / "kiln_model.c"
    shim_src.write_text(resources.files("kiln.runtime").joinpath("c/kiln_model.c").read_text())
    shim_o = tmp / f"{n}_runtime.o"
    _run([cc, "-std=c11", "-O2", "-fPIC", "-fvisibility=hidden", "-pthread", "-Wall", "-Wextra",
          "-I", str(tmp), "-c", str(shim_src), "-o", str(shim_o)])
    # the thread pool, as the JIT loads it, with every name prefixed: the model object
    # calls it, the shim makes one per handle
    renames = [f"-D{s}={abi.runtime_symbol(s)}" for s in POOL_SYMBOLS]
    threads_src = tmp / "kiln_threads.c"
    threads_src.write_text(resources.files("kiln.runtime").joinpath("c/kiln_threads.c").read_text())
    threads_o = tmp / f"{n}_threads.o"
    _run([cc, "-O2", "-fPIC", "-fvisibility=hidden", "-pthread", *renames, "-c", str(threads_src),
          "-o", str(threads_o)])
    _run([_tool("objcopy"), *[f"--redefine-sym={s}={abi.runtime_symbol(s)}" for s in POOL_SYMBOLS],
          str(model_o)])
    objects = [str(model_o), str(shim_o), str(threads_o)]
    if abi.embedded:
        blob_path = tmp / f"{n}.weights.bin"
        blob_path.write_bytes(blob)
        asm = tmp / f"{n}_weights.S"
        asm.write_text(weights_asm(abi, str(blob_path)))
        weights_o = tmp / f"{n}_weights.o"
        _run([cc, "-c", str(asm), "-o", str(weights_o)])
        objects.append(str(weights_o))
    return objects, objects
