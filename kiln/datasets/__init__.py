"""``kiln.datasets``: small real datasets shipped inside the package (no network),
and MNIST read from a file you have,
with Keras' ``load_data()`` contract: ``(x_train, y_train), (x_test, y_test)``."""
from . import digits, mnist

__all__ = ["digits", "mnist"]
