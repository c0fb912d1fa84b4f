"""Code generation: CPU (LLVM via llvmlite, codegen/llvm) and GPU (numba.cuda kernels generated as Python source, codegen/cuda)."""
