"""CPU code generation with llvmlite: kernels per node, an entry function, JIT."""
from .module import LoweredModule, Poly, lower_graph
from .target import Compiled, host_target_machine, jit

__all__ = ["LoweredModule", "Poly", "lower_graph", "Compiled", "host_target_machine", "jit"]
