"""Data movement: where, broadcast_to, concat, slice, pad, gather.

Only static dimensions are ever cut, joined or padded: the batch dimension (a
symbol such as ``N``) passes through whole, so no op here needs its value at
compile time. Layers compute their own arithmetic (Keras' padding, cropping,
axis conventions) and pass explicit numbers.
"""
from __future__ import annotations

import numpy as np

from ..opdef import (Attr, AttrKind, Kind, OpDef, OpTypeError, broadcast_shapes, normalize_axis,
                     register, same_dtype)
from ..types import DType, TensorType, is_symbol
from .vjp_util import scalar, spread, unbroadcast, zeros


def _static(op: str, t: TensorType, axis: int, what: str) -> int:
    d = t.shape[axis]
    if is_symbol(d):
        raise OpTypeError(f"{op}: cannot {what} axis {axis} of {t}: its size {d} is only known "
                          f"at run time")
    return d


@register
class Where(OpDef):
    """cond ? a : b elementwise, the three operands broadcast together (numpy.where);
    ``cond`` is bool, ``a`` and ``b`` share a dtype, which the result has."""
    name = "where"
    kind = Kind.BROADCAST
    family = "elementwise"
    num_inputs = 3

    def infer(self, cond: TensorType, a: TensorType, b: TensorType):
        if cond.dtype is not DType.bool:
            raise OpTypeError(f"where: condition must be bool, got {cond} (compare first)")
        dt = same_dtype(self.name, a, b)
        return TensorType(broadcast_shapes(self.name, cond, a, b), dt)

    def reference(self, cond, a, b):
        return np.where(cond, a, b)

    def vjp(self, g, ins, outs, cts):
        cond, a, b = ins
        ct = cts[0]
        zero = scalar(g, 0, ct)
        return [None, unbroadcast(g, g.op("where", cond, ct, zero), a.type.shape),
                unbroadcast(g, g.op("where", cond, zero, ct), b.type.shape)]


@register
class BroadcastTo(OpDef):
    """numpy.broadcast_to: ``shape`` (may hold symbols, e.g. ``[N,7,33]``) must be
    reachable from the operand by prepending dims and stretching dims of size 1."""
    name = "broadcast_to"
    kind = Kind.BROADCAST
    family = "elementwise"   # a copy whose operand is walked with broadcast strides
    num_inputs = 1
    attrs = (Attr("shape", AttrKind.SHAPE),)

    def infer(self, x: TensorType, *, shape):
        bad = OpTypeError(f"broadcast_to: cannot broadcast {x} to [{','.join(map(str, shape))}]")
        if -1 in shape or len(shape) < x.rank:
            raise bad
        for d, t in zip(x.shape, shape[len(shape) - x.rank:]):
            if d != t and d != 1:
                raise bad
        return TensorType(shape, x.dtype)

    def reference(self, x, *, shape):
        return np.ascontiguousarray(np.broadcast_to(x, shape))

    def vjp(self, g, ins, outs, cts, *, shape):
        return [unbroadcast(g, cts[0], ins[0].type.shape)]


@register
class Concat(OpDef):
    """Join operands (any number >= 1, one dtype and rank) along ``axis``; every other
    dimension must agree. The joined axis must be static in every operand."""
    name = "concat"
    kind = Kind.INJECTIVE
    family = "concat"
    num_inputs = None
    attrs = (Attr("axis", AttrKind.INT),)

    def infer(self, *types: TensorType, axis):
        if not types:
            raise OpTypeError("concat: expects at least one operand")
        dt = same_dtype(self.name, *types)
        rank = types[0].rank
        if any(t.rank != rank for t in types):
            raise OpTypeError(f"concat: operand ranks differ: {', '.join(map(str, types))}")
        ax = normalize_axis(self.name, axis, rank)
        total = 0
        for t in types:
            total += _static(self.name, t, ax, "concatenate along")
            for k in range(rank):
                if k != ax and t.shape[k] != types[0].shape[k]:
                    raise OpTypeError(f"concat: along axis {ax}, the other dimensions must "
                                      f"agree: {', '.join(map(str, types))} (axis {k} differs)")
        shape = list(types[0].shape)
        shape[ax] = total
        return TensorType(tuple(shape), dt)

    def reference(self, *arrays, axis):
        return np.concatenate(arrays, axis=axis)

    def vjp(self, g, ins, outs, cts, *, axis):
        ax = normalize_axis(self.name, axis, outs[0].type.rank)
        out, start = [], 0
        for v in ins:
            size = v.type.shape[ax]
            out.append(g.op("slice", cts[0], axes=(ax,), begin=(start,), end=(start + size,)))
            start += size
        return out


def slice_ranges(x: TensorType, axes, begin, end, steps) -> dict:
    """{axis: range of source indices} with Python slice semantics per axis."""
    n = len(axes)
    steps = steps or (1,) * n
    if not len(begin) == len(end) == len(steps) == n:
        raise OpTypeError(f"slice: axes, begin, end and steps need one entry per sliced axis, "
                          f"got {list(axes)}, {list(begin)}, {list(end)}, {list(steps)}")
    out = {}
    for a, b, e, s in zip(axes, begin, end, steps):
        ax = normalize_axis("slice", a, x.rank)
        if ax in out:
            raise OpTypeError(f"slice: repeated axis in {list(axes)}")
        if s == 0:
            raise OpTypeError(f"slice: step must not be 0 (axis {a})")
        out[ax] = range(*slice(b, e, s).indices(_static("slice", x, ax, "slice")))
    return out


@register
class Slice(OpDef):
    """x[b:e:s] along each listed axis, exactly as a Python slice with integer bounds:
    negative begin/end count from the end, out-of-range bounds are clamped, a negative
    step walks backwards (``begin=-1, end=-(d+1), step=-1`` reverses an axis of size d).
    Axes not listed are kept whole, so the batch axis is never needed at compile time;
    listed axes must be static."""
    name = "slice"
    kind = Kind.INJECTIVE
    family = "slice"
    num_inputs = 1
    attrs = (Attr("axes", AttrKind.INTS), Attr("begin", AttrKind.INTS), Attr("end", AttrKind.INTS),
             Attr("steps", AttrKind.INTS, ()))

    def infer(self, x: TensorType, *, axes, begin, end, steps):
        rs = slice_ranges(x, axes, begin, end, steps)
        return TensorType(tuple(len(rs[k]) if k in rs else d for k, d in enumerate(x.shape)), x.dtype)

    def reference(self, x, *, axes, begin, end, steps):
        idx = [slice(None)] * x.ndim
        for a, b, e, s in zip(axes, begin, end, steps or (1,) * len(axes)):
            idx[a % x.ndim] = slice(b, e, s)
        return np.ascontiguousarray(x[tuple(idx)])

    def vjp(self, g, ins, outs, cts, *, axes, begin, end, steps):
        """Put the cotangent back where the slice came from, zeros elsewhere: per axis,
        reverse it (negative step), spread it (step s > 1: s-1 zeros after each
        element, by a reshape, a pad and a reshape), then pad (or cut) to the axis."""
        x = ins[0]
        ct = cts[0]
        rs = slice_ranges(x.type, axes, begin, end, steps)
        if any(len(r) == 0 for r in rs.values()):
            return [zeros(g, x.type)]
        pads = [0] * (2 * x.type.rank)
        for k, r in sorted(rs.items()):
            n, size = len(r), x.type.shape[k]
            if r.step < 0 and n > 1:
                ct = g.op("slice", ct, axes=(k,), begin=(-1,), end=(-(n + 1),), steps=(-1,))
                r = range(r[-1], r[0] + 1, -r.step)
            elif r.step < 0:
                r = range(r.start, r.start + 1)
            length = n
            if r.step > 1 and n > 1:
                ct = spread(g, ct, k, r.step)
                length = n * r.step
            if r.start + length > size:     # the spread ran past the axis: cut trailing zeros
                length = size - r.start
                ct = g.op("slice", ct, axes=(k,), begin=(0,), end=(length,))
            pads[2 * k], pads[2 * k + 1] = r.start, size - r.start - length
        return [g.op("pad", ct, pads=tuple(pads)) if any(pads) else ct]


@register
class Pad(OpDef):
    """Constant padding: ``pads`` holds (before, after) per axis, flattened
    ``[lo0, hi0, lo1, hi1, ...]`` (one pair per dimension, all >= 0); padded elements
    are ``value`` (converted to the operand's dtype). A symbolic axis is padded by 0."""
    name = "pad"
    kind = Kind.INJECTIVE
    family = "pad"
    num_inputs = 1
    attrs = (Attr("pads", AttrKind.INTS), Attr("value", AttrKind.FLOAT, 0.0))

    def infer(self, x: TensorType, *, pads, value):
        if len(pads) != 2 * x.rank or any(p < 0 for p in pads):
            raise OpTypeError(f"pad: pads must be {2 * x.rank} numbers >= 0 (before, after per "
                              f"axis) for {x}, got {list(pads)}")
        shape = []
        for k, d in enumerate(x.shape):
            lo, hi = pads[2 * k], pads[2 * k + 1]
            if lo or hi:
                d = _static(self.name, x, k, "pad") + lo + hi
            shape.append(d)
        if not x.dtype.is_float and not float(value).is_integer():
            raise OpTypeError(f"pad: value {value} is not representable in {x}")
        return TensorType(tuple(shape), x.dtype)

    def reference(self, x, *, pads, value):
        pairs = [(pads[2 * k], pads[2 * k + 1]) for k in range(x.ndim)]
        return np.pad(x, pairs, constant_values=np.asarray(value).astype(x.dtype))

    def vjp(self, g, ins, outs, cts, *, pads, value):
        x = ins[0]
        cut = [k for k in range(x.type.rank) if pads[2 * k] or pads[2 * k + 1]]
        if not cut:
            return [cts[0]]
        return [g.op("slice", cts[0], axes=tuple(cut), begin=tuple(pads[2 * k] for k in cut),
                     end=tuple(pads[2 * k] + x.type.shape[k] for k in cut))]


@register
class Gather(OpDef):
    """take(params, indices, axis): out[a..., i..., b...] = params[a..., indices[i...], b...],
    shape ``params.shape[:axis] + indices.shape + params.shape[axis+1:]`` (Embedding:
    f32[V,D] with i32[N,T] at axis 0 gives f32[N,T,D]). Indices are i32 or i64.

    Out-of-range indices (< 0 or >= the axis size; negative indices do NOT wrap): the
    reference raises ValueError; compiled code writes zeros for that slice (as
    TensorFlow does on GPU) instead of reading outside the buffer."""
    name = "gather"
    kind = Kind.INJECTIVE
    family = "gather"
    num_inputs = 2
    attrs = (Attr("axis", AttrKind.INT, 0),)

    def infer(self, params: TensorType, indices: TensorType, *, axis):
        if indices.dtype not in (DType.i32, DType.i64):
            raise OpTypeError(f"gather: indices must be i32 or i64, got {indices}")
        ax = normalize_axis(self.name, axis, params.rank)
        return TensorType(params.shape[:ax] + indices.shape + params.shape[ax + 1:], params.dtype)

    def reference(self, params, indices, *, axis):
        ax = axis % params.ndim
        size = params.shape[ax]
        bad = (indices < 0) | (indices >= size)
        if bad.any():
            raise ValueError(f"gather: index {int(indices[bad].flat[0])} is out of range for axis "
                             f"{ax} of size {size}")
        return np.take(params, indices, axis=ax)

    def vjp(self, g, ins, outs, cts, *, axis):
        # dense rows: the cotangent's slices added into zeros at their indices
        params, indices = ins
        return [g.op("scatter_add", cts[0], indices, axis=normalize_axis(self.name, axis, params.type.rank),
                     shape=params.type.shape), None]
