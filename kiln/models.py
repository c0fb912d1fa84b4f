"""``kiln.models``: Keras-style models (see kiln/frontend/models)."""
from .frontend.models import Sequential  # noqa: F401

__all__ = ["Sequential"]

from .frontend.models import Functional, Model  # noqa: E402,F401

__all__ += ["Model", "Functional"]

from .saving import load_model, model_from_json, model_from_yaml, save_model  # noqa: E402

__all__ += ["load_model", "save_model", "model_from_json", "model_from_yaml"]
