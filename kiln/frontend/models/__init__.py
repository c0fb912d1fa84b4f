"""Keras-style models."""
from .model import Model
from .sequential import Sequential

__all__ = ["Model", "Sequential"]

from .functional import Functional  # noqa: E402

__all__ += ["Functional"]
