"""``kiln.models``: Keras-style models (see kiln/frontend/models)."""
from .frontend.models import Sequential  # noqa: F401

__all__ = ["Sequential"]

from .frontend.models import Functional, Model  # noqa: E402,F401

__all__ += ["Model", "Functional"]
