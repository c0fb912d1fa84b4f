"""``kiln.ops``, arrays: joining, slicing and indexing, padding, broadcasting, repeating,
one-hot, and tensors of zeros / ones -- compositions of the IR's data-movement ops.

Only static dimensions are cut or joined (the IR's rule); the batch dimension (a
symbol) passes through whole. Shapes may name it: ``ops.zeros((x.shape[0], 8))``.
"""
from __future__ import annotations

import builtins

import numpy as np

from ..ir.graph import Value, current_graph
from ..ir.types import DType, is_symbol
from .ops import _dtype_of, convert, reshape
from .shapes import to_dtype


def _axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"kiln.ops.{what}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def _values(xs) -> list:
    xs = list(xs)
    like = next((_dtype_of(x) for x in xs if _dtype_of(x) is not None), None)
    return [convert(x, like) for x in xs]


def concatenate(xs, axis=0):
    xs = _values(xs)
    return current_graph().op("concat", *xs, axis=int(axis))


def stack(x, axis=0):
    xs = _values(x)
    rank = xs[0].type.rank + 1
    ax = _axis(axis, rank, "stack")
    return concatenate([expand_dims(v, ax) for v in xs], axis=ax)


def expand_dims(x, axis):
    x = convert(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    rank = x.type.rank + len(axes)
    axes = sorted(_axis(a, rank, "expand_dims") for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return current_graph().op("reshape", x, shape=tuple(shape))


def squeeze(x, axis=None):
    x = convert(x)
    if axis is None:
        axes = {i for i, d in enumerate(x.shape) if d == 1}
    else:
        axes = {_axis(a, x.type.rank, "squeeze")
                for a in ((axis,) if isinstance(axis, (int, np.integer)) else axis)}
        bad = [a for a in axes if x.shape[a] != 1]
        if bad:
            raise ValueError(f"kiln.ops.squeeze: cannot squeeze axis {bad[0]} of {x.type} "
                             f"(its size is not 1)")
    return current_graph().op("reshape", x, shape=tuple(d for i, d in enumerate(x.shape)
                                                        if i not in axes))


def take(x, indices, axis=None):
    """``numpy.take``: gather along ``axis`` (the flattened input when None);
    negative indices count from the end when ``indices`` is a constant."""
    x = convert(x)
    if axis is None:
        x = reshape(x, (-1,))
        axis = 0
    ax = _axis(axis, x.type.rank, "take")
    if not isinstance(indices, Value):
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"kiln.ops.take: indices must be integers, got {idx.dtype}")
        size = x.shape[ax]
        if not is_symbol(size):
            idx = np.where(idx < 0, idx + size, idx)
        indices = current_graph().constant(idx.astype(np.int32), DType.i32)
    return current_graph().op("gather", x, indices, axis=ax)


def slice(inputs, start_indices, shape):  # noqa: A001 (Keras name)
    """``inputs[start:start+shape]`` per axis (Keras' ``ops.slice``); a size of -1
    or a symbolic axis taken whole keeps the rest of that axis."""
    x = convert(inputs)
    axes, begin, end = [], [], []
    for a, (s, n) in enumerate(zip(start_indices, shape)):
        d = x.shape[a]
        if is_symbol(d):
            if s != 0 or n not in (-1, d, None):
                raise ValueError(f"kiln.ops.slice: cannot cut axis {a} of {x.type} (its size is "
                                 f"only known at run time)")
            continue
        stop = d if n in (-1, None) else s + n
        if (s, stop) != (0, d):
            axes.append(a)
            begin.append(int(s))
            end.append(int(stop))
    if not axes:
        return x
    return current_graph().op("slice", x, axes=tuple(axes), begin=tuple(begin), end=tuple(end))


def pad(x, pad_width, mode="constant", constant_values=None):
    """Constant padding; ``pad_width`` holds (before, after) per axis (numpy form)."""
    if mode != "constant":
        raise NotImplementedError(f"kiln.ops.pad: only mode='constant' is supported, got "
                                  f"mode={mode!r}")
    x = convert(x)
    pw = np.asarray(pad_width, dtype=np.int64)
    if pw.ndim == 1:
        pw = np.broadcast_to(pw, (x.type.rank, 2))
    pads = tuple(int(p) for pair in pw for p in pair)
    value = 0.0 if constant_values is None else float(constant_values)
    return current_graph().op("pad", x, pads=pads, value=value)


def broadcast_to(x, shape):
    return current_graph().op("broadcast_to", convert(x), shape=tuple(shape))


def repeat(x, repeats, axis=None):
    """Repeat each element ``repeats`` (an int) times along ``axis`` (numpy.repeat)."""
    x = convert(x)
    if not isinstance(repeats, (int, np.integer)):
        raise NotImplementedError("kiln.ops.repeat: repeats must be one integer")
    if axis is None:
        x = reshape(x, (-1,))
        axis = 0
    ax = _axis(axis, x.type.rank, "repeat")
    shape = list(x.shape)
    expanded = expand_dims(x, ax + 1)
    target = shape[:ax + 1] + [int(repeats)] + shape[ax + 1:]
    out = broadcast_to(expanded, target)
    d = shape[ax]
    new = shape[:ax] + [d * int(repeats) if not is_symbol(d) else -1] + shape[ax + 1:]
    return current_graph().op("reshape", out, shape=tuple(new))


def tile(x, repeats):
    """Repeat the whole tensor ``repeats[i]`` times along each axis (numpy.tile)."""
    x = convert(x)
    reps = [int(r) for r in (repeats if isinstance(repeats, (list, tuple)) else [repeats])]
    reps = [1] * (x.type.rank - len(reps)) + reps
    for ax, r in enumerate(reps):
        if r != 1:
            x = concatenate([x] * r, axis=ax)
    return x


def one_hot(x, num_classes, axis=-1, dtype=None):
    """``x`` (integer class ids) as one-hot vectors of ``num_classes`` along ``axis``."""
    x = convert(x)
    rank = x.type.rank + 1
    ax = _axis(axis, rank, "one_hot")
    shape = [1] * rank
    shape[ax] = int(num_classes)
    classes = current_graph().constant(np.arange(num_classes).reshape(shape), x.dtype)
    hit = current_graph().op("equal", expand_dims(x, ax), classes)
    return current_graph().op("cast", hit, dtype=to_dtype(dtype))


def full(shape, fill_value, dtype=None):
    """A tensor of ``shape`` (which may hold the batch symbol) filled with ``fill_value``."""
    dt = to_dtype(dtype) if dtype is not None else (
        DType.f32 if isinstance(fill_value, float) else to_dtype(np.asarray(fill_value).dtype))
    c = current_graph().constant(np.asarray(fill_value), dt)
    return broadcast_to(c, tuple(shape))


def zeros(shape, dtype=None):
    return full(shape, 0.0, dtype or "float32")


def ones(shape, dtype=None):
    return full(shape, 1.0, dtype or "float32")


def full_like(x, fill_value, dtype=None):
    x = convert(x)
    return full(x.shape, fill_value, dtype if dtype is not None else x.dtype)


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)


def arange(start, stop=None, step=1, dtype=None):
    a = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is not None:
        dt = to_dtype(dtype)
    else:
        dt = DType.i32 if a.dtype.kind in "iu" else DType.f32
    return current_graph().constant(a, dt)


def flip(x, axis=None):
    x = convert(x)
    axes = range(x.type.rank) if axis is None else (
        [axis] if isinstance(axis, (int, np.integer)) else axis)
    axes = [_axis(a, x.type.rank, "flip") for a in axes]
    return current_graph().op("slice", x, axes=tuple(axes), begin=(-1,) * len(axes),
                              end=tuple(-(x.shape[a] + 1) for a in axes), steps=(-1,) * len(axes))


def shape(x) -> tuple:
    """The static shape (None for the batch dimension and other run-time sizes)."""
    x = convert(x)
    return tuple(None if is_symbol(d) else d for d in x.shape)


def ndim(x) -> int:
    return convert(x).type.rank


def getitem(x, key):
    """``x[key]`` for ints, slices (with steps), ``...`` and ``None`` (a new axis)."""
    x = convert(x)
    key = key if isinstance(key, tuple) else (key,)
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded += [builtins.slice(None)] * (x.type.rank - n_real)
        else:
            expanded.append(k)
    if n_real > x.type.rank:
        raise IndexError(f"too many indices for {x.type}")
    axes, begin, end, steps, out_shape = [], [], [], [], []
    src = 0
    for k in expanded:
        if k is None:
            out_shape.append(1)
            continue
        d = x.shape[src]
        if isinstance(k, (int, np.integer)):
            if is_symbol(d):
                raise IndexError(f"cannot index axis {src} of {x.type}: its size is only known "
                                 f"at run time")
            i = int(k) + d if k < 0 else int(k)
            if not 0 <= i < d:
                raise IndexError(f"index {k} is out of bounds for axis {src} with size {d}")
            axes.append(src)
            begin.append(i)
            end.append(i + 1)
            steps.append(1)
        elif isinstance(k, builtins.slice):
            if k == builtins.slice(None):
                out_shape.append(d)
            elif is_symbol(d):
                raise IndexError(f"cannot slice axis {src} of {x.type}: its size is only known "
                                 f"at run time")
            else:
                r = range(*k.indices(d))
                out_shape.append(len(r))
                axes.append(src)
                steps.append(r.step)
                begin.append(r.start)
                end.append(r.stop if r.stop >= 0 else -(d + 1))
        else:
            raise NotImplementedError(f"kiln: indexing with {type(k).__name__} is not supported "
                                      f"(use kiln.ops.take)")
        src += 1
    out_shape += list(x.shape[src:])
    if axes:
        x = current_graph().op("slice", x, axes=tuple(axes), begin=tuple(begin),
                               end=tuple(end), steps=tuple(steps))
    if tuple(out_shape) != tuple(x.shape):
        x = current_graph().op("reshape", x, shape=tuple(out_shape))
    return x

__all__ = ["concatenate", "stack", "expand_dims", "squeeze", "take", "slice", "pad",
           "broadcast_to", "repeat", "tile", "one_hot", "full", "zeros", "ones", "full_like",
           "zeros_like", "ones_like", "arange", "flip", "shape", "ndim", "getitem"]
