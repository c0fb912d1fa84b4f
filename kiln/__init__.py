"""kiln: a deep-learning compiler for Keras-style models."""
from . import ir
from .ir import interpret

__version__ = "0.1.0"
