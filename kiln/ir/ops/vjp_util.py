"""Helpers the ops' ``vjp`` rules share: scalar constants, zeros, and undoing numpy
broadcasting (the gradient of a broadcast operand is the cotangent summed over the
dimensions it was stretched along).

Everything here builds ordinary IR with ``g.op``; shapes may hold symbols (the
batch dimension ``N``): reductions, ``reshape`` and ``broadcast_to`` all take them.
"""
from __future__ import annotations

import numpy as np

from ..types import Affine, is_symbol


def scalar(g, value, like):
    """A rank-0 constant with ``like``'s dtype."""
    return g.constant(value, like.type.dtype)


def zeros(g, type_):
    """Zeros of ``type_`` (symbolic shapes allowed: a broadcast scalar)."""
    z = g.constant(0, type_.dtype)
    return z if not type_.shape else g.op("broadcast_to", z, shape=type_.shape)


def unbroadcast(g, ct, shape):
    """Sum ``ct`` (of a broadcast result's shape) down to ``shape``: over the leading
    axes ``shape`` lacks and over the axes where ``shape`` has 1 and ``ct`` does not."""
    shape = tuple(shape)
    if ct.type.shape == shape:
        return ct
    lead = ct.type.rank - len(shape)
    axes = list(range(lead)) + [lead + k for k, d in enumerate(shape)
                                if d == 1 and ct.type.shape[lead + k] != 1]
    r = g.op("reduce_sum", ct, axes=axes) if axes else ct
    return r if r.type.shape == shape else g.op("reshape", r, shape=shape)


def keepdims_shape(shape, axes) -> tuple:
    return tuple(1 if k in axes else d for k, d in enumerate(shape))


def count(g, dims, like):
    """The number of elements of a shape ``dims`` (static or symbolic), as a rank-0
    value of ``like``'s dtype: a constant, times run-time symbols counted with a
    ``reduce_sum`` of broadcast ones (the IR has no op reading a symbol's value)."""
    a = Affine.product(dims)
    c = scalar(g, float(a.coeff), like)
    syms = [d for d in dims if is_symbol(d)]
    if not syms:
        return c
    ones = g.op("broadcast_to", scalar(g, 1.0, like), shape=tuple(syms))
    n = g.op("reduce_sum", ones, axes=tuple(range(len(syms))))
    return n if a.coeff == 1 else g.op("mul", n, c)


def sum_all(g, terms):
    """The sum of a non-empty list of values (in order)."""
    acc = terms[0]
    for t in terms[1:]:
        acc = g.op("add", acc, t)
    return acc


def block_diagonal(g, w, groups: int):
    """A grouped HWIO kernel [kh,kw,C/G,O] as the dense [kh,kw,C,O] kernel with zeros
    between groups (input channel block g feeds only output channel block g)."""
    kh, kw, cg, o = w.type.shape
    w6 = g.op("reshape", w, shape=(kh, kw, 1, cg, groups, o // groups))
    eye = g.constant(np.eye(groups).reshape(1, 1, groups, 1, groups, 1), w.type.dtype)
    return g.op("reshape", g.op("mul", w6, eye), shape=(kh, kw, groups * cg, o))


def spread(g, x, axis: int, step: int):
    """``x`` with step-1 zeros after each element along ``axis`` (length n -> n*step): a
    reshape adding a unit axis after it, a pad of that axis to ``step``, a reshape back.
    The inverse of a strided slice's gather, for gradients."""
    shp = x.type.shape
    x = g.op("reshape", x, shape=shp[:axis + 1] + (1,) + shp[axis + 1:])
    pads = [0] * (2 * x.type.rank)
    pads[2 * (axis + 1) + 1] = step - 1
    return g.op("reshape", g.op("pad", x, pads=tuple(pads)),
                shape=shp[:axis] + (shp[axis] * step,) + shp[axis + 1:])
