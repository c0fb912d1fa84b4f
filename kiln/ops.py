"""``kiln.ops``: Keras-ops-shaped functions over IR ops, for custom layers' ``call``
(see kiln/frontend/ops.py)."""
from .frontend.ops import (add, assign, cast, divide, exp, log, matmul, max, maximum, mean,  # noqa: F401
                           minimum, multiply, negative, relu, reshape, sigmoid, softmax, sqrt,
                           subtract, sum, tanh, transpose)

__all__ = ["assign", "add", "subtract", "multiply", "divide", "maximum", "minimum", "matmul", "negative",
           "exp", "log", "sqrt", "relu", "sigmoid", "tanh", "softmax", "cast", "sum", "mean",
           "max", "reshape", "transpose"]

# the rest of the Keras-ops namespace (math, arrays, convolution and pooling)
from .frontend.ops import *  # noqa: E402,F401,F403
from .frontend.ops import __all__ as _all  # noqa: E402

__all__ = sorted(set(__all__) | set(_all) - {"convert", "param_for"})
