"""Keras shapes (``(None, 784)``) <-> IR shapes (``("N", 784)``).

The batch dimension ``None`` becomes the IR symbol ``N``; any other unknown (``None``)
dimension at axis ``i`` becomes the symbol ``D<i>``. Going back, every symbol is ``None``.
Shape *inference* is never done here: it is the IR ops' job (layers are traced).
"""
from __future__ import annotations

import numpy as np

from ..ir.types import BATCH, DType, is_symbol


def standardize_shape(shape, what: str = "shape") -> tuple:
    """A tuple of ints >= 0 and Nones (a single int is a 1-tuple)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{what} must be a tuple of integers (or None), got {shape!r}") from None
    out = []
    for d in dims:
        if d is None:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0:
            out.append(int(d))
        else:
            raise ValueError(f"{what} must be a tuple of integers >= 0 (or None), got {shape!r}")
    return tuple(out)


def to_ir_shape(keras_shape) -> tuple:
    return tuple((BATCH if i == 0 else f"D{i}") if d is None else d
                 for i, d in enumerate(keras_shape))


def to_keras_shape(ir_shape) -> tuple:
    return tuple(None if is_symbol(d) else d for d in ir_shape)


def to_dtype(dtype, default: str = "float32") -> DType:
    """'float32' / np.float32 / 'f32' / DType -> DType."""
    if dtype is None:
        dtype = default
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str):
        try:
            return DType(dtype)
        except ValueError:
            pass
    try:
        return DType.from_numpy(dtype)
    except TypeError as e:
        raise ValueError(str(e)) from None


def dtype_name(dtype) -> str:
    """The Keras spelling of a dtype: 'float32', 'int64', ..."""
    return str(to_dtype(dtype).np)
