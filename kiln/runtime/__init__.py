"""The runtime: compiled executables (and, later, training loops, export, serving)."""
from .executable import Executable, compile

__all__ = ["Executable", "compile"]
