"""``kiln.activations``: activation functions by Keras name (see kiln/frontend/activations.py)."""
from .frontend.activations import get, linear, relu, serialize, sigmoid, softmax, tanh  # noqa: F401

__all__ = ["linear", "relu", "sigmoid", "tanh", "softmax", "get", "serialize"]
