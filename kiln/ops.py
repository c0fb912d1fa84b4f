"""``kiln.ops``: Keras-ops-shaped functions over IR ops, for custom layers' ``call``
(see kiln/frontend/ops.py)."""
from .frontend.ops import (add, assign, cast, divide, exp, log, matmul, max, maximum, mean,  # noqa: F401
                           minimum, multiply, negative, relu, reshape, sigmoid, softmax, sqrt,
                           subtract, sum, tanh, transpose)

__all__ = ["assign", "add", "subtract", "multiply", "divide", "maximum", "minimum", "matmul", "negative",
           "exp", "log", "sqrt", "relu", "sigmoid", "tanh", "softmax", "cast", "sum", "mean",
           "max", "reshape", "transpose"]
