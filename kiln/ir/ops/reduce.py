"""Reductions over axes, argmax, and softmax."""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, normalize_axis, register, require_float
from ..types import DType, TensorType
from .vjp_util import count, keepdims_shape


def reduced_axes(op: str, axes, rank: int) -> tuple:
    norm = tuple(normalize_axis(op, a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        raise OpTypeError(f"{op}: repeated axis in {list(axes)}")
    if not norm:
        raise OpTypeError(f"{op}: axes must not be empty (list every axis to reduce all)")
    return tuple(sorted(norm))


class Reduce(OpDef):
    kind = Kind.REDUCTION
    family = "reduce"
    num_inputs = 1
    attrs = (Attr("axes", AttrKind.INTS), Attr("keepdims", AttrKind.BOOL, False))

    def infer(self, x: TensorType, *, axes, keepdims):
        if x.dtype is DType.bool:
            raise OpTypeError(f"{self.name}: expects a numeric operand, got {x}")
        ax = reduced_axes(self.name, axes, x.rank)
        if keepdims:
            shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in ax)
        return TensorType(shape, x.dtype)

    def reference(self, x, *, axes, keepdims):
        return np.asarray(self.fn(x, axis=tuple(axes), keepdims=keepdims), dtype=x.dtype)

    @staticmethod
    def _spread(g, x, ct, axes, keepdims):
        """The cotangent broadcast back over the reduced axes."""
        ax = reduced_axes("reduce", axes, x.type.rank)
        if not keepdims:
            ct = g.op("reshape", ct, shape=keepdims_shape(x.type.shape, ax))
        return g.op("broadcast_to", ct, shape=x.type.shape)


@register
class ReduceSum(Reduce):
    name = "reduce_sum"
    fn = staticmethod(np.sum)

    def vjp(self, g, ins, outs, cts, *, axes, keepdims):
        return [self._spread(g, ins[0], cts[0], axes, keepdims)]


@register
class ReduceMean(Reduce):
    name = "reduce_mean"

    def infer(self, x, **attrs):
        require_float(self.name, x)
        return super().infer(x, **attrs)

    fn = staticmethod(np.mean)

    def vjp(self, g, ins, outs, cts, *, axes, keepdims):
        x = ins[0]
        n = count(g, [x.type.shape[a] for a in reduced_axes(self.name, axes, x.type.rank)], x)
        return [self._spread(g, x, g.op("div", cts[0], n), axes, keepdims)]


@register
class ReduceMax(Reduce):
    name = "reduce_max"
    fn = staticmethod(np.max)

    def vjp(self, g, ins, outs, cts, *, axes, keepdims):
        return _extremum_vjp(g, ins[0], outs[0], cts[0], axes, keepdims)


@register
class ReduceMin(Reduce):
    name = "reduce_min"
    fn = staticmethod(np.min)

    def vjp(self, g, ins, outs, cts, *, axes, keepdims):
        return _extremum_vjp(g, ins[0], outs[0], cts[0], axes, keepdims)


def _extremum_vjp(g, x, y, ct, axes, keepdims):
    """reduce_max/min: the cotangent goes to the elements equal to the result, split
    equally between them on a tie (as maximum/minimum of two operands)."""
    ax = reduced_axes("reduce", axes, x.type.rank)
    if not keepdims:
        shape = keepdims_shape(x.type.shape, ax)
        y, ct = g.op("reshape", y, shape=shape), g.op("reshape", ct, shape=shape)
    hit = g.op("cast", g.op("equal", x, y), dtype=x.type.dtype)
    ties = g.op("reduce_sum", hit, axes=ax, keepdims=True)
    return [g.op("mul", hit, g.op("div", ct, ties))]


@register
class Argmax(OpDef):
    """Index (i64) of the largest element along ``axis``; the first one on ties, and the
    first NaN if there is one (numpy.argmax)."""
    name = "argmax"
    kind = Kind.REDUCTION
    family = "argmax"
    num_inputs = 1
    differentiable = False   # an integer index: no gradient flows through it
    attrs = (Attr("axis", AttrKind.INT), Attr("keepdims", AttrKind.BOOL, False))

    def infer(self, x: TensorType, *, axis, keepdims):
        if x.dtype is DType.bool:
            raise OpTypeError(f"argmax: expects a numeric operand, got {x}")
        ax = normalize_axis(self.name, axis, x.rank)
        if x.shape[ax] == 0:
            raise OpTypeError(f"argmax: axis {axis} of {x} is empty")
        shape = tuple((1 if keepdims else None) if k == ax else d for k, d in enumerate(x.shape))
        return TensorType(tuple(d for d in shape if d is not None), DType.i64)

    def reference(self, x, *, axis, keepdims):
        return np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64)


@register
class Softmax(OpDef):
    """exp(x - max) / sum(exp(x - max)) along one axis (numerically stable)."""
    name = "softmax"
    kind = Kind.REDUCTION
    family = "softmax"
    num_inputs = 1
    attrs = (Attr("axis", AttrKind.INT, -1),)

    def infer(self, x: TensorType, *, axis):
        require_float(self.name, x)
        normalize_axis(self.name, axis, x.rank)
        return x

    def reference(self, x, *, axis):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    def vjp(self, g, ins, outs, cts, *, axis):
        # y * (ct - sum(ct * y, axis))
        y, ct = outs[0], cts[0]
        dot = g.op("reduce_sum", g.op("mul", ct, y), axes=(axis,), keepdims=True)
        return [g.op("mul", y, g.op("sub", ct, dot))]
