"""Elementwise ops: unary math, binary arithmetic with numpy broadcasting, cast.

Codegen lowers every op here through the "elementwise" family: a loop nest over the
output with a per-op scalar function (kiln/codegen/llvm/scalar.py) keyed by op name.
"""
from __future__ import annotations

import numpy as np

from ..opdef import (Attr, AttrKind, Kind, OpDef, OpTypeError, broadcast_shapes, register,
                     require_float, same_dtype)
from ..types import DType, TensorType


class Unary(OpDef):
    kind = Kind.ELEMENTWISE
    family = "elementwise"
    num_inputs = 1
    float_only = True

    def infer(self, x: TensorType):
        if self.float_only:
            require_float(self.name, x)
        elif x.dtype is DType.bool:
            raise OpTypeError(f"{self.name}: expects a numeric operand, got {x}")
        return x

    def reference(self, x):
        with np.errstate(all="ignore"):
            return np.asarray(self.fn(x), dtype=x.dtype)


class Binary(OpDef):
    kind = Kind.BROADCAST
    family = "elementwise"
    num_inputs = 2

    def infer(self, a: TensorType, b: TensorType):
        dt = same_dtype(self.name, a, b)
        if dt is DType.bool:
            raise OpTypeError(f"{self.name}: expects numeric operands, got {a}, {b}")
        return TensorType(broadcast_shapes(self.name, a, b), dt)

    def reference(self, a, b):
        with np.errstate(all="ignore"):
            return np.asarray(self.fn(a, b), dtype=a.dtype)


def _sigmoid(x):
    # split by sign so neither branch overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@register
class Neg(Unary):
    name = "neg"
    float_only = False
    fn = staticmethod(np.negative)


@register
class Exp(Unary):
    name = "exp"
    fn = staticmethod(np.exp)


@register
class Log(Unary):
    name = "log"
    fn = staticmethod(np.log)


@register
class Sqrt(Unary):
    name = "sqrt"
    fn = staticmethod(np.sqrt)


@register
class Relu(Unary):
    name = "relu"
    float_only = False
    fn = staticmethod(lambda x: np.maximum(x, 0))


@register
class Sigmoid(Unary):
    name = "sigmoid"
    fn = staticmethod(_sigmoid)


@register
class Tanh(Unary):
    name = "tanh"
    fn = staticmethod(np.tanh)


@register
class Add(Binary):
    name = "add"
    fn = staticmethod(np.add)


@register
class Sub(Binary):
    name = "sub"
    fn = staticmethod(np.subtract)


@register
class Mul(Binary):
    name = "mul"
    fn = staticmethod(np.multiply)


@register
class Div(Binary):
    name = "div"

    def infer(self, a, b):
        t = super().infer(a, b)
        require_float(self.name, t)
        return t

    fn = staticmethod(np.divide)


@register
class Maximum(Binary):
    name = "maximum"
    fn = staticmethod(np.maximum)


@register
class Minimum(Binary):
    name = "minimum"
    fn = staticmethod(np.minimum)


@register
class Cast(OpDef):
    name = "cast"
    kind = Kind.ELEMENTWISE
    family = "elementwise"
    num_inputs = 1
    attrs = (Attr("dtype", AttrKind.DTYPE),)

    def infer(self, x, *, dtype):
        return x.with_dtype(dtype)

    def reference(self, x, *, dtype):
        return x.astype(dtype.np)
