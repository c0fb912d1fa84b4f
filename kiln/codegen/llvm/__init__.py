"""CPU code generation with llvmlite: kernels per node, an entry function, JIT.

A rule every kernel keeps: the IR fixes the rounding. No ``contract``, ``reassoc`` or
``fast`` flags and no ``llvm.fmuladd`` -- an FMA is ``vmath.fma`` (``llvm.fma`` where the
target has one), a float sum is ``kernels.ordered_sum`` or a loop in a stated order -- so
the quick and optimized tiers of ``kiln.compile`` (O0 and O3 code generation) and the AOT
library compute the same bits (tests/runtime/test_tiers.py checks it).
"""
from .module import LoweredModule, lower_graph
from .target import Compiled, host_target_machine, jit

__all__ = ["LoweredModule", "lower_graph", "Compiled", "host_target_machine", "jit"]
from . import fused  # noqa: E402,F401  (registers the fusion kernel family)
from . import kernels_data, kernels_nn  # noqa: E402,F401  (register their kernel families)
from . import kernels_gemm  # noqa: E402,F401
from . import kernels_scan  # noqa: E402,F401  (the scan kernel)
from . import kernels_grad  # noqa: E402,F401  (kernels of the ops backward passes need)
from . import kernels_random  # noqa: E402,F401  (random_uniform)
from . import kernels_attention  # noqa: E402,F401  (attention_packed)
from . import kernels_winograd  # noqa: E402,F401  (conv2d_winograd)
from . import kernels_lstm  # noqa: E402,F401  (lstm_cell_packed)
