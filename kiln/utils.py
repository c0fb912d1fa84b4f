"""``kiln.utils``: session and randomness helpers (as ``keras.utils``)."""
from .frontend.naming import clear_session  # noqa: F401
from .frontend.random import set_random_seed  # noqa: F401

__all__ = ["clear_session", "set_random_seed"]
