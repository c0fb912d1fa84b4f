"""GPU code generation: numba.cuda kernels generated (as Python source) from the same
fused groups as the CPU backend. numba is imported only when kernels are compiled
(``device.cuda_module``), never when kiln is imported."""
from .kernels import SIMULATOR, Kernel, LaunchConfig, unsupported_ops
from .module import CudaProgram, compile_kernels, lower_graph

__all__ = ["SIMULATOR", "Kernel", "LaunchConfig", "CudaProgram", "compile_kernels", "lower_graph",
           "unsupported_ops"]
