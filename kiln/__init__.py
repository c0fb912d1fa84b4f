"""kiln: a deep-learning compiler for Keras-style models."""
from ._version import __version__
from . import ir
from .ir import interpret
from .runtime import Executable, compile
from .runtime import profile  # per-kernel time: kiln.compile(..., profile=True), kiln.profile.report
from .runtime.export import export  # ahead of time: libNAME.so + NAME.h + main.c
from . import activations, initializers, layers, models, ops, utils  # frontend
from . import callbacks, datasets, losses, metrics, optimizers  # training ([training])
from . import distributed  # data-parallel training on MPI (mpi4py imported on use)
from . import saving  # Keras file formats: .keras, legacy .h5, .weights.h5, JSON / YAML
from .frontend import Input, Sequential, lower  # frontend
from .frontend import Model  # frontend: Functional (Model(inputs, outputs)) and subclassed models

