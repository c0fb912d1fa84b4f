"""``kiln.utils``: session and randomness helpers, and Keras' data utilities (as
``keras.utils``; they live in ``kiln.data``)."""
from .data import (cross_validate, get_file, min_max_scale, normalize,  # noqa: F401
                   standardize, to_categorical, train_test_split, train_val_test_split)
from .frontend.naming import clear_session  # noqa: F401
from .frontend.random import set_random_seed  # noqa: F401

__all__ = ["clear_session", "set_random_seed", "cross_validate", "get_file", "min_max_scale",
           "normalize", "standardize", "to_categorical", "train_test_split",
           "train_val_test_split"]
