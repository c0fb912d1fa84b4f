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
from .vjp_util import scalar, unbroadcast


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

    def vjp(self, g, ins, outs, cts):
        return [g.op("neg", cts[0])]


@register
class Exp(Unary):
    name = "exp"
    fn = staticmethod(np.exp)

    def vjp(self, g, ins, outs, cts):
        return [g.op("mul", cts[0], outs[0])]


@register
class Log(Unary):
    name = "log"
    fn = staticmethod(np.log)

    def vjp(self, g, ins, outs, cts):
        return [g.op("div", cts[0], ins[0])]


@register
class Sqrt(Unary):
    name = "sqrt"
    fn = staticmethod(np.sqrt)

    def vjp(self, g, ins, outs, cts):
        # 1 / (2 sqrt(x)): inf at x = 0
        return [g.op("div", g.op("mul", cts[0], scalar(g, 0.5, outs[0])), outs[0])]


@register
class Relu(Unary):
    name = "relu"
    float_only = False
    fn = staticmethod(lambda x: np.maximum(x, 0))

    def vjp(self, g, ins, outs, cts):
        # the derivative at 0 is taken as 0 (as TensorFlow and JAX). relu(x) > 0 exactly
        # where x > 0 (NaN: neither), so the mask reads the output: the input is then
        # read by relu alone and stays in the producer's registers (a GEMM's epilogue)
        zero = scalar(g, 0, outs[0])
        return [g.op("where", g.op("greater", outs[0], zero), cts[0], zero)]


@register
class Sigmoid(Unary):
    name = "sigmoid"
    fn = staticmethod(_sigmoid)

    def vjp(self, g, ins, outs, cts):
        y = outs[0]   # y (1 - y)
        return [g.op("mul", cts[0], g.op("mul", y, g.op("sub", scalar(g, 1, y), y)))]


@register
class Tanh(Unary):
    name = "tanh"
    fn = staticmethod(np.tanh)

    def vjp(self, g, ins, outs, cts):
        y = outs[0]   # 1 - y^2
        return [g.op("mul", cts[0], g.op("sub", scalar(g, 1, y), g.op("square", y)))]


@register
class Add(Binary):
    name = "add"
    fn = staticmethod(np.add)

    def vjp(self, g, ins, outs, cts):
        return [unbroadcast(g, cts[0], v.type.shape) for v in ins]


@register
class Sub(Binary):
    name = "sub"
    fn = staticmethod(np.subtract)

    def vjp(self, g, ins, outs, cts):
        a, b = ins
        return [unbroadcast(g, cts[0], a.type.shape), unbroadcast(g, g.op("neg", cts[0]), b.type.shape)]


@register
class Mul(Binary):
    name = "mul"
    fn = staticmethod(np.multiply)

    def vjp(self, g, ins, outs, cts):
        a, b = ins
        return [unbroadcast(g, g.op("mul", cts[0], b), a.type.shape),
                unbroadcast(g, g.op("mul", cts[0], a), b.type.shape)]


@register
class Div(Binary):
    name = "div"

    def infer(self, a, b):
        t = super().infer(a, b)
        require_float(self.name, t)
        return t

    fn = staticmethod(np.divide)

    def vjp(self, g, ins, outs, cts):
        a, b = ins     # d/da = 1/b, d/db = -a/b^2 = -y/b
        ga = g.op("div", cts[0], b)
        return [unbroadcast(g, ga, a.type.shape),
                unbroadcast(g, g.op("neg", g.op("mul", ga, outs[0])), b.type.shape)]


@register
class Maximum(Binary):
    name = "maximum"
    fn = staticmethod(np.maximum)

    def vjp(self, g, ins, outs, cts):
        return _select_vjp(g, ins, cts[0], "greater", "less")


@register
class Minimum(Binary):
    name = "minimum"
    fn = staticmethod(np.minimum)

    def vjp(self, g, ins, outs, cts):
        return _select_vjp(g, ins, cts[0], "less", "greater")


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

    def vjp(self, g, ins, outs, cts, *, dtype):
        # float -> float only: a cast to or from an integer or bool is piecewise constant
        if ins[0].type.dtype.is_float and dtype.is_float:
            return [g.op("cast", cts[0], dtype=ins[0].type.dtype)]
        return [None]


# -- more unary math (what the Keras activations are built from) ------------------------------
def _select_vjp(g, ins, ct, wins: str, loses: str):
    """maximum/minimum: the cotangent goes to the operand that was selected; on a tie
    it is split equally (so maximum(x, x) has derivative 1, as the identity).
    ``wins``/``loses``: the comparison of (a, b) under which a/b was selected."""
    a, b = ins
    tie = g.op("where", g.op("equal", a, b), scalar(g, 0.5, ct), scalar(g, 0, ct))
    out = []
    for v, cmp in ((a, wins), (b, loses)):
        share = g.op("where", g.op(cmp, a, b), scalar(g, 1, ct), tie)
        out.append(unbroadcast(g, g.op("mul", ct, share), v.type.shape))
    return out


def _softplus(x):
    # log(1 + exp(x)) without overflow: log1p(exp(-|x|)) + max(x, 0)
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


_erf = np.frompyfunc(math.erf, 1, 1)  # numpy has no erf; math.erf is exact to f64 rounding


@register
class Abs(Unary):
    name = "abs"
    float_only = False
    fn = staticmethod(np.abs)

    def vjp(self, g, ins, outs, cts):
        # sign(x): the derivative at 0 is taken as 0 (as JAX)
        return [g.op("mul", cts[0], g.op("sign", ins[0]))]


@register
class Square(Unary):
    name = "square"
    float_only = False
    fn = staticmethod(np.square)

    def vjp(self, g, ins, outs, cts):
        x = ins[0]
        return [g.op("mul", cts[0], g.op("mul", x, scalar(g, 2, x)))]


@register
class Sign(Unary):
    """-1, 0 or 1 (0 for -0.0; NaN stays NaN), as numpy's sign."""
    name = "sign"
    float_only = False
    fn = staticmethod(np.sign)
    differentiable = False   # piecewise constant: the gradient through it is zero


@register
class Floor(Unary):
    name = "floor"
    fn = staticmethod(np.floor)
    differentiable = False   # piecewise constant: the gradient through it is zero


@register
class Erf(Unary):
    name = "erf"

    @staticmethod
    def fn(x):
        return np.asarray(_erf(np.asarray(x, np.float64)), np.float64)

    def vjp(self, g, ins, outs, cts):
        x = ins[0]    # 2/sqrt(pi) exp(-x^2)
        d = g.op("mul", g.op("exp", g.op("neg", g.op("square", x))), scalar(g, 2 / math.sqrt(math.pi), x))
        return [g.op("mul", cts[0], d)]


@register
class Expm1(Unary):
    """exp(x) - 1, accurate near 0 (ELU, SELU)."""
    name = "expm1"
    fn = staticmethod(np.expm1)

    def vjp(self, g, ins, outs, cts):
        y = outs[0]   # exp(x) = y + 1
        return [g.op("mul", cts[0], g.op("add", y, scalar(g, 1, y)))]


@register
class Log1p(Unary):
    """log(1 + x), accurate near 0."""
    name = "log1p"
    fn = staticmethod(np.log1p)

    def vjp(self, g, ins, outs, cts):
        x = ins[0]
        return [g.op("div", cts[0], g.op("add", x, scalar(g, 1, x)))]


@register
class Softplus(Unary):
    """log(1 + exp(x)), computed as log1p(exp(-|x|)) + max(x, 0) so it never overflows."""
    name = "softplus"
    fn = staticmethod(_softplus)

    def vjp(self, g, ins, outs, cts):
        return [g.op("mul", cts[0], g.op("sigmoid", ins[0]))]


@register
class Pow(Binary):
    """a ** b for floats (numpy power: a negative base with a non-integer exponent is NaN)."""
    name = "pow"

    def infer(self, a, b):
        t = super().infer(a, b)
        require_float(self.name, t)
        return t

    fn = staticmethod(np.power)

    def vjp(self, g, ins, outs, cts):
        # d/da = b a^(b-1) (0 where b = 0); d/db = y log(a) (0 where a = 0: a^b is 0 there
        # for b > 0, and the limit of y log(a) is 0)
        a, b = ins
        y, ct = outs[0], cts[0]
        zero, one = scalar(g, 0, y), scalar(g, 1, y)
        da = g.op("mul", b, g.op("pow", a, g.op("sub", b, one)))
        da = g.op("where", g.op("equal", b, zero), zero, da)
        db = g.op("where", g.op("equal", a, zero), zero, g.op("mul", y, g.op("log", a)))
        return [unbroadcast(g, g.op("mul", ct, da), a.type.shape),
                unbroadcast(g, g.op("mul", ct, db), b.type.shape)]


# -- comparisons and logic: bool results (stored one byte per element, 0/1, as numpy) -----------
class Compare(OpDef):
    """Compare with numpy broadcasting; operands of one dtype; result bool. Any
    comparison with NaN is false, except not_equal (true), as in numpy."""
    kind = Kind.BROADCAST
    family = "elementwise"
    num_inputs = 2
    bool_operands = False   # equal/not_equal also compare bools
    differentiable = False   # bool result: no gradient flows through a comparison

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
    differentiable = False

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
