"""LLVM target machines, the optimization pipeline (see SPEED_LEVEL) and the in-process JIT.

Like numba's code library: a module is parsed, verified, optimized for a target
machine, and then either JIT-compiled (MCJIT) to hand out function addresses, or
emitted as an object file ([aot]). The textual stages (LLVM IR before and after
optimization, assembly) are for dumps: the optimized IR is printed eagerly only when
asked (``keep_texts``), else made again from the same IR if it is ever wanted. Machine
code is generated with ``CODEGEN_OPTIONS`` (no loop strength reduction; see there).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import llvmlite.binding as llvm

from ... import target as targets

_initialized = False


def _init():
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


#: LLVM command-line options in force while kiln's code is generated (JIT, object files,
#: assembly), as (set, reset) pairs. They are process-wide (cl::opt), so they are set
#: around each code generation under ``_codegen_lock`` and reset after it: other llvmlite
#: users in the process keep LLVM's defaults (llvmlite runs one LLVM call at a time).
#:
#: -disable-lsr: no loop strength reduction. x86 addressing (base + index*scale + offset)
#: already folds the kernels' address arithmetic, and on the fully unrolled GEMM/conv
#: microkernels LSR's formula search was half of code generation (0.22 of 0.36 s for the
#: seed CNN, 55 of 118 ms for the MLP) for no run-time gain measured on the bench models
#: (MLP, CNN, ResNet, LSTM, Transformer at batch 1 and 256). It only rewrites induction
#: variables and addresses, never arithmetic: results are the same bit for bit.
CODEGEN_OPTIONS = (("-disable-lsr=true", "-disable-lsr=false"),)
_codegen_lock = threading.RLock()


@contextmanager
def _codegen():
    """Generate machine code with ``CODEGEN_OPTIONS`` set."""
    with _codegen_lock:
        for on, _ in CODEGEN_OPTIONS:
            llvm.set_option("kiln", on)
        try:
            yield
        finally:
            for _, off in CODEGEN_OPTIONS:
                llvm.set_option("kiln", off)


def target_machine(cpu="host", opt: int = 3, reloc: str = "default",
                   codemodel: str = "jitdefault"):
    """A target machine for ``cpu``: "host" (this CPU and all its features, what the JIT
    uses) or a named target of kiln/target.py ("generic" is baseline x86-64: SSE2, no
    AVX); a CPUTarget works too."""
    _init()
    t = targets.get(cpu)
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=t.cpu, features=t.features, opt=opt, reloc=reloc, codemodel=codemodel)


def host_target_machine(opt: int = 3, reloc: str = "default", codemodel: str = "jitdefault"):
    return target_machine("host", opt, reloc, codemodel)


#: LLVM's IR pipeline for each ``opt_level``. Level 3 runs LLVM's O2 pipeline (the code
#: generator stays at O3: the target machine's level): what O3 adds -- non-trivial loop
#: unswitching, argument promotion, call-site splitting and the like -- made the same
#: results bit for bit and no faster code on the bench models (MLP, CNN, ResNet, LSTM,
#: Transformer at batch 1 and 256), for 5-15% more optimization time. Both levels run
#: the loop and SLP vectorizers.
SPEED_LEVEL = {0: 0, 1: 1, 2: 2, 3: 2}


def optimize(mod, tm, level: int = 3):
    pto = llvm.create_pipeline_tuning_options(speed_level=SPEED_LEVEL.get(level, level))
    pto.loop_vectorization = level >= 2
    pto.slp_vectorization = level >= 2
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def assembly(ll_after: str, tm) -> str:
    """Assembly of optimized LLVM IR text (made on demand: only dumps need it)."""
    mod = llvm.parse_assembly(ll_after)
    with _codegen():
        return tm.emit_assembly(mod)


class Compiled:
    """A JIT-compiled module; keeps the engine alive while its functions are used.
    Its textual stages are computed on first use when ``texts`` is a function (code
    linked from the compile cache has none at hand)."""

    def __init__(self, engine, texts, tm, context=None):
        self.engine, self.tm = engine, tm
        self._texts = texts
        if context is not None:     # a private LLVM context: disposed after the engine
            context.engine = engine
        self._context = context

    def _stages(self):
        if callable(self._texts):
            self._texts = self._texts()
        return self._texts

    @property
    def ll_before(self) -> str:
        return self._stages()[0]

    @property
    def ll_after(self) -> str:
        return self._stages()[1]

    @property
    def asm(self) -> str:
        return assembly(self.ll_after, self.tm)

    def address(self, name: str) -> int:
        a = self.engine.get_function_address(name)
        if not a:
            raise LookupError(f"no function {name} in the compiled module")
        return a


class _Context:
    """A private LLVM context (so a compile may run on any thread), disposed only after
    the engine whose module lives in it -- in whatever order the garbage collector
    finalizes the two (llvmlite would dispose a context on its own, maybe first)."""

    def __init__(self):
        self.ref = llvm.create_context()
        self.ref._owned = True          # never disposed by llvmlite; see __del__
        self._ptr = self.ref._ptr
        self.engine = None

    def __del__(self):
        if self.engine is not None:
            self.engine.close()
        llvm.ffi.lib.LLVMPY_ContextDispose(self._ptr)


def module_text(ll_module, tm=None) -> str:
    """The textual LLVM IR of an llvmlite module, for this process's triple and ``tm``'s
    data layout (a string can be compiled on another thread, in its own context)."""
    if isinstance(ll_module, str):
        return ll_module
    _init()
    ll_module.triple = llvm.get_process_triple()
    ll_module.data_layout = str((tm or host_target_machine()).target_data)
    return str(ll_module)


def _parse_and_optimize(ll_module, tm, opt: int, context=None):
    """The one path from an llvmlite module (or its text) to optimized LLVM (JIT and
    object files)."""
    text = module_text(ll_module, tm)
    mod = llvm.parse_assembly(text, context=context)
    mod.verify()
    optimize(mod, tm, opt)
    return text, mod


def jit(ll_module, opt: int = 3, on_object=None, before_codegen=None,
        keep_texts: bool = True) -> Compiled:
    """Optimize and JIT-compile ``ll_module`` (or its text, see ``module_text``) in a
    private LLVM context -- so it may run on any thread; ``on_object(bytes)`` receives
    the object code MCJIT made (for the compile cache); ``before_codegen()`` runs after
    the LLVM passes, before machine code is made and its symbols resolved (the runtime
    makes ``kiln_parallel_for`` resolvable there, its build overlapping the passes).
    ``keep_texts=False``: do not print the optimized module now (a few ms); if its text
    is ever asked for, it is made again from the same LLVM IR by the same passes."""
    _init()
    ctx = _Context()
    tm = host_target_machine(opt=opt)
    text, mod = _parse_and_optimize(ll_module, tm, opt, ctx.ref)
    if keep_texts:
        texts = (text, str(mod))   # before code generation, which rewrites the module in place
    else:
        def texts():
            return optimized_texts(text, opt)
    engine = llvm.create_mcjit_compiler(mod, tm)
    if on_object is not None:
        engine.set_object_cache(notify_func=lambda _mod, buf: on_object(bytes(buf)))
    if before_codegen is not None:
        before_codegen()
    with _codegen():
        engine.finalize_object()
    return Compiled(engine, texts, tm, ctx)


#: the quick tier's function passes: registers for the allocas (GEMM accumulators),
#: CFG cleanup; no loop passes, no vectorizer; instruction selection at -O0. No
#: instcombine: it was 40% of the quick tier's compile time (38 of 92 ms for the seed
#: CNN) for code no faster (the MLP at batch 256 ran faster without it, 16 vs 24 ms)
QUICK_PASSES = ("sroa", "simplify_cfg")


def _quick_passes(mod, tm):
    fpm = llvm.create_new_function_pass_manager()
    for name in QUICK_PASSES:
        getattr(fpm, f"add_{name}_pass")()
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=0))
    for f in mod.functions:
        if not f.is_declaration:
            fpm.run(f, pb)


def jit_quick(ll_module, before_codegen=None, keep_texts: bool = True) -> Compiled:
    """The quick tier of ``kiln.compile``: a few function passes and fast instruction
    selection -- several times faster to compile than ``jit``'s O3, slower code (the
    GEMM microkernel keeps its explicit vectors and FMAs; elementwise loops stay scalar).
    ``before_codegen`` and ``keep_texts`` as for ``jit``."""
    _init()
    ctx = _Context()
    tm = host_target_machine(opt=0)
    text = module_text(ll_module, tm)
    mod = llvm.parse_assembly(text, context=ctx.ref)
    mod.verify()
    _quick_passes(mod, tm)
    if keep_texts:
        texts = (text, str(mod))
    else:
        def texts():
            again = llvm.parse_assembly(text)
            _quick_passes(again, tm)
            return text, str(again)
    engine = llvm.create_mcjit_compiler(mod, tm)
    if before_codegen is not None:
        before_codegen()
    engine.finalize_object()
    return Compiled(engine, texts, tm, ctx)


def link_object(obj: bytes, texts, opt: int = 3) -> Compiled:
    """A JIT engine running previously compiled object code (a compile-cache hit);
    ``texts()`` gives (LLVM IR, optimized LLVM IR) if they are ever asked for."""
    _init()
    tm = host_target_machine(opt=opt)
    empty = llvm.parse_assembly("")
    empty.triple = llvm.get_process_triple()
    engine = llvm.create_mcjit_compiler(empty, tm)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return Compiled(engine, texts, tm)


def optimized_texts(ll_module, opt: int = 3):
    """(LLVM IR, optimized LLVM IR) of a module, without generating code."""
    tm = host_target_machine(opt=opt)
    text, mod = _parse_and_optimize(ll_module, tm, opt)
    return text, str(mod)


@dataclass
class ObjectCode:
    """A module compiled ahead of time: a relocatable ELF object (position-independent,
    for shared libraries and static archives) and its textual stages."""
    obj: bytes
    ll_before: str
    ll_after: str
    asm: str
    cpu: str


def emit_object(ll_module, cpu: str = "host", opt: int = 3) -> ObjectCode:
    """The JIT's pipeline (same parse, verify and O3 passes) for a target CPU, emitted as
    an object file. With cpu="host" the target machine differs from the JIT's only in
    relocation model and code model (pic/default, which shared objects need)."""
    tm = target_machine(cpu, opt=opt, reloc="pic", codemodel="default")
    text, mod = _parse_and_optimize(ll_module, tm, opt)
    after = str(mod)
    with _codegen():
        obj = tm.emit_object(mod)     # as the JIT: machine code straight from the optimized module
    return ObjectCode(obj, text, after, assembly(after, tm), cpu)
