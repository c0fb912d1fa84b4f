"""``kiln.datasets``: small real datasets shipped inside the package (no network),
with Keras' ``load_data()`` contract: ``(x_train, y_train), (x_test, y_test)``."""
from . import digits

__all__ = ["digits"]
