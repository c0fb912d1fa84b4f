"""Op declarations, one module per family. Importing this package registers them all."""
from . import elementwise, linalg, reduce, shape, constant, fusion, data, nn  # noqa: F401
from . import layout  # noqa: F401,E402
