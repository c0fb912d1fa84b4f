"""Layer weights: a small Keras-3-like ``Variable``."""
from __future__ import annotations

import itertools

import numpy as np

from .shapes import dtype_name

_versions = itertools.count(1)


class Variable:
    """A named weight of a layer.

    ``name`` is the weight's own name (``"kernel"``), ``path`` is
    ``"<layer name>/<name>"`` (``"dense/kernel"``), as Keras 3. The value is held
    read-only; ``assign`` replaces it (checking the shape), ``numpy()`` returns a copy.
    Every assignment gets a fresh ``version`` so compiled executables holding a
    snapshot of the weights know when they are stale.
    """

    def __init__(self, value, name: str, path: str | None = None, trainable: bool = True,
                 dtype=None):
        dt = np.dtype(dtype_name(dtype if dtype is not None else np.asarray(value).dtype))
        self.name = name
        self.path = path or name
        self.trainable = bool(trainable)
        self._value = self._freeze(value, dt)
        self._version = next(_versions)

    @staticmethod
    def _freeze(value, dt) -> np.ndarray:
        a = np.array(value, dtype=dt)  # always a private copy
        a.setflags(write=False)
        return a

    # -- Keras-like surface ---------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._value.shape

    @property
    def dtype(self) -> str:
        return str(self._value.dtype)

    @property
    def ndim(self) -> int:
        return self._value.ndim

    @property
    def size(self) -> int:
        return int(self._value.size)

    @property
    def value(self) -> np.ndarray:
        """The current value (read-only array; use ``assign`` to change it)."""
        return self._value

    @property
    def version(self) -> int:
        return self._version

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def assign(self, value) -> "Variable":
        a = np.asarray(value)
        if a.shape != self.shape:
            raise ValueError(f"Variable {self.path}: cannot assign a value of shape {a.shape}; "
                             f"expected shape {self.shape}")
        self._value = self._freeze(a, self._value.dtype)
        self._version = next(_versions)
        return self

    def __array__(self, dtype=None, copy=None):
        return self._value.astype(dtype) if dtype is not None else self._value.copy()

    def __repr__(self):
        return (f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, "
                f"trainable={self.trainable}>")
