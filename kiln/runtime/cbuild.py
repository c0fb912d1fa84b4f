"""kiln's run-time C: sources built once per installation with the system C compiler.

Two small C sources ship with kiln: the thread pool generated code calls
(kiln/runtime/c/kiln_threads.c, see threads.py) and the CPython extension that makes
an Executable's call (kiln/runtime/c/kiln_call.c, see fastcall.py). Each is compiled
into a shared library in kiln's cache directory (``$KILN_CACHE_DIR``, else
``~/.cache/kiln``), named by a hash of what it is built from, so one build serves
every process until kiln (or Python, or numpy) changes. A build can be started in the
background (``prepare``: the compiler runs beside a model's compile) and is waited
for when the library is needed (``build``). Builds write a temporary file and rename
it into place: concurrent builders never see a partial library.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    d = os.environ.get("KILN_CACHE_DIR")
    return Path(d) if d else Path.home() / ".cache" / "kiln"


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) found")
    return cc


class CBuild:
    """One C source and how to build it: ``stem`` names the library
    (``<stem>-<hash>.so``), ``flags()`` gives the compiler flags after ``-O2 -shared
    -fPIC -pthread`` (raising RuntimeError when the build cannot be done here), and
    ``key()`` what else the library depends on besides its source (hashed in)."""

    def __init__(self, source: Path, stem: str, what: str,
                 flags: Callable[[], list] = list, key: Callable[[], str] = str):
        self.source, self.stem, self.what = source, stem, what
        self.flags, self.key = flags, key
        self.lock = threading.Lock()
        #: a build ``prepare`` started and nobody has waited for yet: (out, tmp, process, pid)
        self.pending = None
        atexit.register(self.reap)

    def target(self) -> Path:
        digest = hashlib.sha256(self.source.read_bytes() + self.key().encode()).hexdigest()[:16]
        return cache_dir() / f"{self.stem}-{digest}.so"

    def start(self, out: Path):
        """Start the C compiler on the source, into a temporary file beside ``out``:
        (out, the temporary path, the compiler's process)."""
        cmd = [compiler(), "-O2", "-shared", "-fPIC", "-pthread", *self.flags(), str(self.source)]
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            proc = subprocess.Popen([*cmd, "-o", tmp], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except BaseException:
            os.unlink(tmp)
            raise
        return out, tmp, proc

    def finish(self, out: Path, tmp: str, proc, pid=None) -> Path:
        """Wait for a build ``start`` began and move its library into place."""
        try:
            _, err = proc.communicate()
            if proc.returncode:
                raise RuntimeError(f"building {self.what} failed: {err.strip()}")
            os.replace(tmp, out)   # atomic: concurrent builders never see a partial file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return out

    @staticmethod
    def _own(pending) -> bool:
        """Whether this process started the pending build (a forked child did not: it
        neither waits for the compiler nor moves its file)."""
        return pending is not None and pending[3] == os.getpid()

    def build(self) -> Path:
        """The library's path, built now (or the background build waited for) if the
        cache holds none. RuntimeError or OSError when it cannot be built."""
        out = self.target()
        with self.lock:
            pending, self.pending = self.pending, None
        if self._own(pending):
            if pending[0] == out:
                return self.finish(*pending)
            try:                 # the cache directory changed since: build there instead
                self.finish(*pending)
            except (RuntimeError, OSError):
                pass
        if out.exists():
            return out
        return self.finish(*self.start(out))

    def prepare(self) -> None:
        """Start the build in the background (a C compiler process) if none is pending
        and the cache directory holds no library; ``build`` waits for it. Failures are
        reported there."""
        with self.lock:
            if self.pending is not None:
                return
            try:
                out = self.target()
                if not out.exists():
                    self.pending = (*self.start(out), os.getpid())
            except (RuntimeError, OSError):
                pass     # build tries again, and says why if it fails

    def reap(self) -> None:
        """At exit: a build started but never waited for still lands in the cache (no
        stray temporary file)."""
        with self.lock:
            pending, self.pending = self.pending, None
        if self._own(pending):
            try:
                self.finish(*pending)
            except (RuntimeError, OSError):
                pass
