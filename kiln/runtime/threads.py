"""The thread pool the generated code runs on (kiln/runtime/c/kiln_threads.c).

The C file is compiled once with the system C compiler into a small shared library
in kiln's cache directory (``$KILN_CACHE_DIR``, else ``~/.cache/kiln``), keyed by the
source's hash, and loaded into the process so that JIT-compiled code resolves
``kiln_parallel_for``. Exported models link the same source. One pool per thread
count is created per process and lives until exit. Without a C compiler, kiln runs
single-threaded (and says so once). ``kiln.compile`` starts the build (``prepare``)
before its own work and waits for it only when the JIT needs the symbol: on a cold
cache the C compiler runs beside the graph passes, lowering and LLVM's passes.

Thread count: ``kiln.compile(..., threads=N)``, else ``$KILN_NUM_THREADS``, else the
cores this process may run on.
"""
from __future__ import annotations

import ctypes
import os
import threading
import warnings
from pathlib import Path

import llvmlite.binding as llvm

from .cbuild import CBuild

SOURCE = Path(__file__).with_name("c") / "kiln_threads.c"
_lock = threading.Lock()
_lib = None
_pools: dict = {}
_failed = False


def default_threads() -> int:
    env = os.environ.get("KILN_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"KILN_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"KILN_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: the pool's library (kiln/runtime/cbuild.py: built once per installation)
BUILD = CBuild(SOURCE, "libkiln_threads", "the thread pool")


def prepare() -> None:
    """Start building the pool's library in the background (a C compiler process) if
    this process has not loaded it and the cache directory holds none, so that the
    build overlaps the rest of a compile (graph passes, lowering, LLVM's passes);
    ``pool`` and ``ensure_symbols`` wait for it. Failures are reported there."""
    if _lib is None and not _failed:
        BUILD.prepare()


def _library():
    global _lib, _failed
    if _lib is None and not _failed:
        try:
            path = BUILD.build()
            llvm.load_library_permanently(str(path))   # JIT code resolves its symbols
            lib = ctypes.CDLL(str(path))
            lib.kiln_pool_create.restype = ctypes.c_void_p
            lib.kiln_pool_create.argtypes = [ctypes.c_int]
            lib.kiln_pool_threads.restype = ctypes.c_int
            lib.kiln_pool_threads.argtypes = [ctypes.c_void_p]
            _lib = lib
        except (RuntimeError, OSError) as e:
            _failed = True
            warnings.warn(f"kiln runs single-threaded: {e}", RuntimeWarning, stacklevel=3)
    return _lib


def thread_count(threads: int | None = None) -> int:
    """``threads``, else the default (``default_threads``); a ValueError if not positive."""
    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return n


def pool(threads: int | None = None) -> int:
    """The address of the process's pool with ``threads`` threads (0: run serially)."""
    n = thread_count(threads)
    if n == 1:
        return 0
    with _lock:
        lib = _library()
        if lib is None:
            return 0
        if n not in _pools:
            _pools[n] = lib.kiln_pool_create(n) or 0
        return _pools[n]


def pool_threads(pool_addr: int) -> int:
    if not pool_addr or _lib is None:
        return 1
    return _lib.kiln_pool_threads(pool_addr)


def ensure_symbols() -> None:
    """Make ``kiln_parallel_for`` resolvable for the JIT (even for serial executables,
    whose code still references it)."""
    with _lock:
        if _library() is None:
            _define_serial_fallback()


_fallback = None


def _define_serial_fallback():
    """Without the C pool, give the JIT a serial ``kiln_parallel_for`` (never called
    with a pool: the pool pointer is 0, but the symbol must resolve)."""
    global _fallback
    if _fallback is not None:
        return
    TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)

    @ctypes.CFUNCTYPE(None, ctypes.c_void_p, TASK, ctypes.c_void_p, ctypes.c_int64)
    def serial(pool_, task, ctx, n):
        task(ctx, 0, n)

    _fallback = serial
    llvm.add_symbol("kiln_parallel_for", ctypes.cast(serial, ctypes.c_void_p).value)
