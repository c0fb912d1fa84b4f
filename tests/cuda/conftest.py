"""The CUDA tests run under numba's CUDA simulator (one Python thread per CUDA
thread: tiny shapes only). The simulator is chosen when numba is first imported, so
the variable is set here, at collection, before any test imports numba; kiln itself
never imports numba at import time."""
import os
import sys

import pytest

if "numba" not in sys.modules:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"


@pytest.fixture(scope="session")
def cuda():
    from kiln.codegen.cuda.device import CudaUnavailable, cuda_module, is_simulator
    try:
        mod = cuda_module()
    except CudaUnavailable as e:
        pytest.skip(f"no CUDA device and no simulator: {e}")
    if not is_simulator(mod):
        pytest.skip("a real GPU: run bench/gpu_check.py instead (these shapes are for the simulator)")
    return mod
