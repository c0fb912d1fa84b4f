"""``kiln.activations``: activation functions by Keras name (see kiln/frontend/activations.py)."""
from .frontend.activations import (celu, elu, exponential, gelu, get, hard_sigmoid,  # noqa: F401
                                   hard_silu, hard_swish, hard_tanh, leaky_relu, linear,
                                   log_sigmoid, log_softmax, mish, relu, relu6, selu, serialize,
                                   sigmoid, silu, softmax, softplus, softsign, swish, tanh)
from .frontend.activations import __all__  # noqa: F401
