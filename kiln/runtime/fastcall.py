"""The C call path of an Executable (kiln/runtime/c/kiln_call.c).

An Executable's call used to be Python around a ctypes call: checking the inputs,
allocating the outputs, filling the pointer tables, the lock, ctypes' conversions --
~4.4 us of a 24 us batch-1 MLP call. ``Entry`` (a CPython extension type) makes the
common call -- contiguous arrays of the dtypes and shapes of the last call -- in C
(~0.5 us) and leaves anything else to the Executable's Python path.

The extension is built like the thread pool (kiln/runtime/cbuild.py): once per
installation, with the system C compiler, against this Python's and numpy's headers
(the library's name hashes their versions). ``prepare`` starts the build beside a
model's compile. Where it cannot be built (no compiler, no Python headers, a
free-threaded Python, whose calls this GIL-based design does not cover) or
``KILN_FAST_CALL=0``, Executables keep the ctypes path: the same results, ~4 us more
per call. ``entry_type()`` is the type, or None; ``error`` says why it is None.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np

from .cbuild import CBuild

SOURCE = Path(__file__).with_name("c") / "kiln_call.c"


def _flags() -> list:
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        raise RuntimeError("a free-threaded Python: the call path relies on the GIL")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise RuntimeError(f"no Python.h in {include} (the Python development headers)")
    return [f"-I{include}", f"-I{np.get_include()}"]


def _key() -> str:
    return f"{sys.implementation.cache_tag} {sys.version} numpy {np.__version__}"


BUILD = CBuild(SOURCE, "kiln_call", "kiln's call extension", flags=_flags, key=_key)
_lock = threading.Lock()
_type = None
#: why ``entry_type()`` is None (None while it was not asked, or when it is not)
error: str | None = None


def enabled() -> bool:
    return os.environ.get("KILN_FAST_CALL", "1") != "0"


def prepare() -> None:
    """Start building the extension in the background, if it is due."""
    if _type is None and error is None and enabled():
        try:
            _flags()
        except RuntimeError:
            return          # entry_type says why
        BUILD.prepare()


def entry_type():
    """``kiln_call.Entry``, built and loaded on first use; None where it cannot be
    (``error`` says why) or ``KILN_FAST_CALL=0``."""
    global _type, error
    if not enabled():
        return None
    if _type is not None or error is not None:
        return _type
    with _lock:
        if _type is None and error is None:
            try:
                path = BUILD.build()
                spec = importlib.util.spec_from_file_location(
                    "kiln_call", path, loader=importlib.machinery.ExtensionFileLoader("kiln_call", str(path)))
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                _type = module.Entry
            except (RuntimeError, OSError, ImportError) as e:
                error = f"{type(e).__name__}: {e}"
    return _type
