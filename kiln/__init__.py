"""kiln: a deep-learning compiler for Keras-style models."""
from . import ir
from .ir import interpret
from .runtime import Executable, compile

__version__ = "0.1.0"
