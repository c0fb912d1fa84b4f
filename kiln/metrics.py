"""``kiln.metrics``: Keras-style streaming metrics (see kiln/frontend/metrics.py)."""
from .frontend.metrics import *  # noqa: F401,F403
from .frontend.metrics import __all__  # noqa: F401
