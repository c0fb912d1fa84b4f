"""``kiln.optimizers``: Keras-style optimizers and learning-rate schedules (see
kiln/frontend/optimizers)."""
from .frontend.optimizers import (SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Nadam,  # noqa: F401
                                  Optimizer, RMSprop, get, schedules)

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax",
           "Nadam", "schedules", "get"]
