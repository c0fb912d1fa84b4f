"""The frontend's random state: one module-level numpy Generator.

Weight initializers draw from it. ``kiln.utils.set_random_seed(s)`` reseeds it (and
Python's ``random`` and numpy's legacy global state, as Keras does), which makes
initialization reproducible; unseeded, it is seeded from OS entropy.
"""
from __future__ import annotations

import random as _pyrandom

import numpy as np

_generator: np.random.Generator = np.random.default_rng()


def generator() -> np.random.Generator:
    """The Generator initializers draw from (replaced by ``set_random_seed``)."""
    return _generator


def set_random_seed(seed: int) -> None:
    """Seed every random number generator kiln's frontend uses."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed expects a non-negative integer seed, got {seed!r}")
    seed = int(seed)
    _generator = np.random.default_rng(seed)
    _pyrandom.seed(seed)
    np.random.seed(seed % 2**32)
