"""Code generation: CPU (LLVM via llvmlite) now; GPU (numba.cuda) in [gpu]."""
