"""kiln: a deep-learning compiler for Keras-style models."""
from ._version import __version__
from . import ir
from .ir import interpret
from .runtime import Executable, compile
from . import activations, initializers, layers, models, ops, utils  # frontend
from .frontend import Input, Sequential, lower  # frontend

