"""``kiln.losses``: Keras-style losses (see kiln/frontend/losses.py)."""
from .frontend.losses import *  # noqa: F401,F403
from .frontend.losses import __all__  # noqa: F401
