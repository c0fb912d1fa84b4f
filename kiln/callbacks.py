"""``kiln.callbacks``: Keras-style training callbacks (see kiln/frontend/callbacks.py)."""
from .frontend.callbacks import *  # noqa: F401,F403
from .frontend.callbacks import __all__  # noqa: F401
