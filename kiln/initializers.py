"""``kiln.initializers``: weight initializers (see kiln/frontend/initializers.py)."""
from .frontend.initializers import (Constant, GlorotNormal, GlorotUniform, HeNormal,  # noqa: F401
                                    HeUniform, Initializer, LecunNormal, LecunUniform, Ones,
                                    Orthogonal, RandomNormal, RandomUniform, TruncatedNormal,
                                    VarianceScaling, Zeros, compute_fans, get)

__all__ = ["Initializer", "Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal",
           "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform",
           "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal", "compute_fans", "get"]
