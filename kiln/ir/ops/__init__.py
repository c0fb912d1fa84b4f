"""Op declarations, one module per family. Importing this package registers them all."""
from . import elementwise, linalg, reduce, shape, constant, fusion, data, nn  # noqa: F401
from . import layout  # noqa: F401,E402
from . import winograd  # noqa: F401,E402  (conv2d_winograd: 3x3 convs in the Winograd domain)
from . import lstm  # noqa: F401,E402  (lstm_cell_packed: an LSTM step's GEMM and gates)
from . import control  # noqa: F401,E402  (scan)
from . import grad  # noqa: F401,E402  (ops the backward pass needs: scatter_add, conv/pool gradients)
from . import random  # noqa: F401,E402  (random_uniform: counter-based RNG for dropout)
