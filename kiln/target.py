"""CPU targets: what the code is generated for (the host, or a named portable CPU).

Passes (the layout pass picks panel widths from the vector width) and codegen (the
LLVM target machine) read the same description, so the JIT and an exported binary
built for the same target run identical code.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass

import llvmlite.binding as llvm


@dataclass(frozen=True)
class CPUTarget:
    name: str            # "host", "x86-64-v3", "generic"
    cpu: str             # LLVM cpu name
    features: str        # LLVM feature string
    vector_bits: int     # widest float vector register

    @property
    def f32_lanes(self) -> int:
        return self.vector_bits // 32

    @property
    def has_fma(self) -> bool:
        return "+fma" in self.features or self.vector_bits >= 512


@functools.lru_cache(maxsize=None)
def host() -> CPUTarget:
    feats = llvm.get_host_cpu_features()
    bits = 512 if feats.get("avx512f") else 256 if feats.get("avx2") or feats.get("avx") else 128
    return CPUTarget("host", llvm.get_host_cpu_name(), feats.flatten(), bits)


NAMED = {
    "generic": CPUTarget("generic", "x86-64", "", 128),
    "x86-64-v3": CPUTarget("x86-64-v3", "x86-64-v3", "+avx2,+fma", 256),
}


def get(name: str | CPUTarget | None) -> CPUTarget:
    if name is None or name == "host":
        return host()
    if isinstance(name, CPUTarget):
        return name
    try:
        return NAMED[name]
    except KeyError:
        raise ValueError(f"unknown target cpu {name!r}; expected host, "
                         f"{', '.join(NAMED)}") from None


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("kiln_cpu_target", default=None)


def current() -> CPUTarget:
    """The target being compiled for: the host, unless inside ``using(...)`` (export)."""
    t = _CURRENT.get()
    return host() if t is None else t


@contextlib.contextmanager
def using(name: str | CPUTarget | None):
    """Compile for ``name`` inside this block: the passes and kernels that depend on the
    CPU (panel widths, vector widths, FMA) read ``current()``."""
    token = _CURRENT.set(get(name))
    try:
        yield current()
    finally:
        _CURRENT.reset(token)
