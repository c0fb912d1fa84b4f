"""Finding numba.cuda and a device (a GPU, or numba's CUDA simulator)."""
from __future__ import annotations

import os
import sys


class CudaUnavailable(RuntimeError):
    """target='cuda' was asked for where there is no GPU and no simulator."""


def simulator_requested() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda_module():
    """``numba.cuda``, checked to have a device; raises CudaUnavailable otherwise."""
    try:
        from numba import cuda
    except ImportError as e:
        raise CudaUnavailable(f"target='cuda' needs numba's CUDA target (pip install kiln[cuda]): "
                              f"{e}") from None
    try:
        ok = cuda.is_available()
    except Exception as e:   # a broken driver install raises instead of answering
        ok, why = False, str(e)
    else:
        why = "numba.cuda found no CUDA device and driver"
    if not ok:
        hint = ""
        if simulator_requested() and "numba" in sys.modules and not is_simulator(cuda):
            hint = " (NUMBA_ENABLE_CUDASIM=1 is set, but numba was imported before it was set)"
        raise CudaUnavailable(f"target='cuda': {why}{hint}. Run on a machine with an NVIDIA GPU, "
                              f"or set NUMBA_ENABLE_CUDASIM=1 before numba is first imported to "
                              f"use numba's CUDA simulator (slow; for tests), or use target='cpu'")
    return cuda


def is_simulator(cuda) -> bool:
    return "simulator" in str(getattr(cuda.device_array, "__module__", ""))
