"""kiln's Keras-style frontend: layers, models, initializers, activations, ops, and
lowering to the IR. (Depends on kiln.ir only; the runtime is imported lazily.)"""
from . import activations, initializers, ops
from .layers import Activation, Dense, Dropout, Flatten, Input, InputLayer, Layer, Reshape
from .lowering import lower
from .models import Model, Sequential
from .naming import clear_session
from .random import set_random_seed
from .variables import Variable

__all__ = ["activations", "initializers", "ops", "Layer", "InputLayer", "Input", "Dense",
           "Activation", "Dropout", "Flatten", "Reshape", "lower", "Model", "Sequential",
           "clear_session", "set_random_seed", "Variable"]
