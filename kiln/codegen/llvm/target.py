"""LLVM target machines, the O3 pipeline, and the in-process JIT.

Like numba's code library: a module is parsed, verified, optimized for a target
machine, and then either JIT-compiled (MCJIT) to hand out function addresses, or
emitted as an object file ([aot]). The textual stages (LLVM IR before and after
optimization, assembly) are kept for dumps.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm

_initialized = False


def _init():
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


def host_target_machine(opt: int = 3, reloc: str = "default", codemodel: str = "jitdefault"):
    _init()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=opt, reloc=reloc, codemodel=codemodel)


def optimize(mod, tm, level: int = 3):
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = level >= 2
    pto.slp_vectorization = level >= 2
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


@dataclass
class Compiled:
    """A JIT-compiled module; keeps the engine alive while its functions are used."""
    engine: object
    ll_before: str
    ll_after: str
    asm: str

    def address(self, name: str) -> int:
        a = self.engine.get_function_address(name)
        if not a:
            raise LookupError(f"no function {name} in the compiled module")
        return a


def jit(ll_module, opt: int = 3) -> Compiled:
    _init()
    tm = host_target_machine(opt=opt)
    ll_module.triple = llvm.get_process_triple()
    ll_module.data_layout = str(tm.target_data)
    text = str(ll_module)
    mod = llvm.parse_assembly(text)
    mod.verify()
    optimize(mod, tm, opt)
    asm = tm.emit_assembly(mod)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    return Compiled(engine, text, str(mod), asm)
