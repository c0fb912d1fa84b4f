"""``kiln.layers``: Keras-style layers (see kiln/frontend/layers)."""
from .frontend.layers import (Activation, Dense, Dropout, Flatten, Input, InputLayer,  # noqa: F401
                              Layer, Reshape)

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Activation", "Dropout", "Flatten", "Reshape"]

from .frontend.layers import *  # noqa: E402,F401,F403  (every layer the frontend exports)
from .frontend.layers import __all__ as _all  # noqa: E402

__all__ = sorted(set(__all__) | set(_all))
