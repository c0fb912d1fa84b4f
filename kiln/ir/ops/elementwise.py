"""Elementwise ops: unary math, binary arithmetic with numpy broadcasting, comparisons
and logic (bool results), cast.

Codegen lowers every op here through the "elementwise" family: a loop nest over the
output with a per-op scalar function (kiln/codegen/llvm/scalar.py) keyed by op name.
Activations are compositions of these (relu6 = minimum(relu(x), 6), elu = where(x > 0,
x, alpha * expm1(x)), exact gelu via erf, softsign = x / (1 + abs(x)), ...).
"""
from __future__ import annotations

import math

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


# -- more unary math (what the Keras activations are built from) ------------------------------
def _softplus(x):
    # log(1 + exp(x)) without overflow: log1p(exp(-|x|)) + max(x, 0)
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


_erf = np.frompyfunc(math.erf, 1, 1)  # numpy has no erf; math.erf is exact to f64 rounding


@register
class Abs(Unary):
    name = "abs"
    float_only = False
    fn = staticmethod(np.abs)


@register
class Square(Unary):
    name = "square"
    float_only = False
    fn = staticmethod(np.square)


@register
class Sign(Unary):
    """-1, 0 or 1 (0 for -0.0; NaN stays NaN), as numpy's sign."""
    name = "sign"
    float_only = False
    fn = staticmethod(np.sign)


@register
class Floor(Unary):
    name = "floor"
    fn = staticmethod(np.floor)


@register
class Erf(Unary):
    name = "erf"

    @staticmethod
    def fn(x):
        return np.asarray(_erf(np.asarray(x, np.float64)), np.float64)


@register
class Expm1(Unary):
    """exp(x) - 1, accurate near 0 (ELU, SELU)."""
    name = "expm1"
    fn = staticmethod(np.expm1)


@register
class Log1p(Unary):
    """log(1 + x), accurate near 0."""
    name = "log1p"
    fn = staticmethod(np.log1p)


@register
class Softplus(Unary):
    """log(1 + exp(x)), computed as log1p(exp(-|x|)) + max(x, 0) so it never overflows."""
    name = "softplus"
    fn = staticmethod(_softplus)


@register
class Pow(Binary):
    """a ** b for floats (numpy power: a negative base with a non-integer exponent is NaN)."""
    name = "pow"

    def infer(self, a, b):
        t = super().infer(a, b)
        require_float(self.name, t)
        return t

    fn = staticmethod(np.power)


# -- comparisons and logic: bool results (stored one byte per element, 0/1, as numpy) -----------
class Compare(OpDef):
    """Compare with numpy broadcasting; operands of one dtype; result bool. Any
    comparison with NaN is false, except not_equal (true), as in numpy."""
    kind = Kind.BROADCAST
    family = "elementwise"
    num_inputs = 2
    bool_operands = False   # equal/not_equal also compare bools

    def infer(self, a: TensorType, b: TensorType):
        dt = same_dtype(self.name, a, b)
        if dt is DType.bool and not self.bool_operands:
            raise OpTypeError(f"{self.name}: expects numeric operands, got {a}, {b}")
        return TensorType(broadcast_shapes(self.name, a, b), DType.bool)

    def reference(self, a, b):
        with np.errstate(all="ignore"):
            return np.asarray(self.fn(a, b), dtype=bool)


@register
class Greater(Compare):
    name = "greater"
    fn = staticmethod(np.greater)


@register
class GreaterEqual(Compare):
    name = "greater_equal"
    fn = staticmethod(np.greater_equal)


@register
class Less(Compare):
    name = "less"
    fn = staticmethod(np.less)


@register
class LessEqual(Compare):
    name = "less_equal"
    fn = staticmethod(np.less_equal)


@register
class Equal(Compare):
    name = "equal"
    bool_operands = True
    fn = staticmethod(np.equal)


@register
class NotEqual(Compare):
    name = "not_equal"
    bool_operands = True
    fn = staticmethod(np.not_equal)


class Logical(OpDef):
    """Boolean logic on bool operands (numpy broadcasting); result bool."""
    kind = Kind.BROADCAST
    family = "elementwise"

    def infer(self, *types: TensorType):
        if any(t.dtype is not DType.bool for t in types):
            raise OpTypeError(f"{self.name}: expects bool operands, got "
                              f"{', '.join(str(t) for t in types)} (compare or cast first)")
        return TensorType(broadcast_shapes(self.name, *types), DType.bool)

    def reference(self, *arrays):
        return np.asarray(self.fn(*arrays), dtype=bool)


@register
class LogicalAnd(Logical):
    name = "logical_and"
    num_inputs = 2
    fn = staticmethod(np.logical_and)


@register
class LogicalOr(Logical):
    name = "logical_or"
    num_inputs = 2
    fn = staticmethod(np.logical_or)


@register
class LogicalNot(Logical):
    name = "logical_not"
    kind = Kind.ELEMENTWISE
    num_inputs = 1
    fn = staticmethod(np.logical_not)
