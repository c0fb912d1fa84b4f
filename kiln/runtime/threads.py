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

import atexit
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import llvmlite.binding as llvm

SOURCE = Path(__file__).with_name("c") / "kiln_threads.c"
_lock = threading.Lock()
_lib = None
_pools: dict = {}
_failed = False


def cache_dir() -> Path:
    d = os.environ.get("KILN_CACHE_DIR")
    return Path(d) if d else Path.home() / ".cache" / "kiln"


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


def _target() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    return cache_dir() / f"libkiln_threads-{digest}.so"


def _start(out: Path):
    """Start the C compiler on the pool's source, into a temporary file beside ``out``:
    (out, the temporary path, the compiler's process)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) found")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.Popen([cc, "-O2", "-shared", "-fPIC", "-pthread", str(SOURCE), "-o", tmp],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    except BaseException:
        os.unlink(tmp)
        raise
    return out, tmp, proc


def _own(pending) -> bool:
    """Whether this process started the pending build (a forked child did not: it
    neither waits for the compiler nor moves its file)."""
    return pending is not None and pending[3] == os.getpid()


def _finish(out: Path, tmp: str, proc, pid=None) -> Path:
    """Wait for a build ``_start`` began and move its library into place."""
    try:
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"building the thread pool failed: {err.strip()}")
        os.replace(tmp, out)   # atomic: concurrent builders never see a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


#: a build ``prepare`` started and nobody has waited for yet: (out, tmp, process, pid)
_pending = None


def _build() -> Path:
    global _pending
    out = _target()
    pending, _pending = _pending, None
    if _own(pending):
        if pending[0] == out:
            return _finish(*pending)
        try:                     # the cache directory changed since: build there instead
            _finish(*pending)
        except (RuntimeError, OSError):
            pass
    if out.exists():
        return out
    return _finish(*_start(out))


def prepare() -> None:
    """Start building the pool's library in the background (a C compiler process) if
    this process has not loaded it and the cache directory holds none, so that the
    build overlaps the rest of a compile (graph passes, lowering, LLVM's passes);
    ``pool`` and ``ensure_symbols`` wait for it. Failures are reported there."""
    global _pending
    with _lock:
        if _lib is not None or _failed or _pending is not None:
            return
        try:
            out = _target()
            if not out.exists():
                _pending = (*_start(out), os.getpid())
        except (RuntimeError, OSError):
            pass     # _build tries again, and says why if it fails


@atexit.register
def _reap() -> None:
    """A build started but never waited for still lands in the cache (no stray
    temporary file)."""
    global _pending
    pending, _pending = _pending, None
    if _own(pending):
        try:
            _finish(*pending)
        except (RuntimeError, OSError):
            pass


def _library():
    global _lib, _failed
    if _lib is None and not _failed:
        try:
            path = _build()
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
