"""Saving and loading in Keras' formats: ``.keras`` (Keras 3), legacy ``.h5``,
``.weights.h5`` / legacy weights, and JSON / YAML architectures (kiln/saving/*.py)."""
from .api import (load_model, load_weights, model_from_json, model_from_yaml, save_model,
                  save_weights, to_json, to_yaml)
from .serialization import (SavingError, deserialize, register_keras_serializable,
                            serialize)

__all__ = ["load_model", "save_model", "load_weights", "save_weights", "model_from_json",
           "model_from_yaml", "to_json", "to_yaml", "serialize", "deserialize",
           "register_keras_serializable", "SavingError"]
