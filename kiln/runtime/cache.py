"""kiln's on-disk compile cache: machine code keyed by what determines it.

The key is a hash of kiln's version and code-generating sources, the target CPU (name and features), the
optimization level and the optimized graph's text (which holds every constant;
parameter values are not in the code -- they are passed by pointer -- so new weights
reuse the same code). On a hit the object file MCJIT produced last time is linked
straight into a fresh engine: no lowering, no LLVM optimization, no code generation.
The LLVM IR and assembly of a cached executable are regenerated only if someone
asks for them.

Location: ``$KILN_CACHE_DIR/jit`` (default ``~/.cache/kiln/jit``); files are written
atomically, so concurrent processes never read a partial entry. ``KILN_CACHE=0``
turns it off.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

import llvmlite.binding as llvm

from .._version import __version__
from .cbuild import cache_dir


def enabled() -> bool:
    return os.environ.get("KILN_CACHE", "1") not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """A hash of the sources that turn a graph into machine code (the IR and codegen
    packages): a kiln edited in place never reuses stale code."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for sub in ("ir", "codegen"):
        for f in sorted((root / sub).rglob("*.py")):
            h.update(f.read_bytes())
    return h.hexdigest()


def key(graph_text: str, opt: int) -> str:
    h = hashlib.sha256()
    for part in (__version__, code_fingerprint(), llvm.get_process_triple(), llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten(), str(opt), graph_text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _path(k: str) -> Path:
    return cache_dir() / "jit" / f"{k}.o"


MAGIC = b"kiln-jit-object\n"


def load(k: str) -> bytes | None:
    """The object code stored under ``k``, or None. An entry whose checksum does not
    match (a truncated or damaged file) is a miss, never handed to the linker."""
    try:
        data = _path(k).read_bytes()
    except OSError:
        return None
    head, digest, obj = data[:len(MAGIC)], data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
    if head != MAGIC or hashlib.sha256(obj).digest() != digest:
        return None
    return obj


def store(k: str, obj: bytes) -> None:
    p = _path(k)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(obj).digest() + obj)
        os.replace(tmp, p)
    except OSError:
        pass   # a cache that cannot be written is only a slower compile next time
