"""``kiln.layers``: Keras-style layers (see kiln/frontend/layers)."""
from .frontend.layers import (Activation, Dense, Dropout, Flatten, Input, InputLayer,  # noqa: F401
                              Layer, Reshape)

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Activation", "Dropout", "Flatten", "Reshape"]
