"""Scalar semantics of the elementwise ops as Python source for numba.cuda kernels.

``EXPR[op](xs, dts, out, attrs)`` returns the source of one expression computing the
op's result from the operand expressions ``xs`` (names of locals, so an operand may be
repeated freely), the operand dtypes and the result dtype. The same table serves real
GPUs (numba compiles the expression) and the simulator (Python evaluates it); math
functions come from ``math``, which numba.cuda lowers to libdevice. Bools are 0/1.
Float results follow the operand precision: constants are written ``float32(c)`` for
f32 so numba keeps the arithmetic in single precision on the device.
"""
from __future__ import annotations

from ...ir.types import DType

_NP = {DType.f32: "float32", DType.f64: "float64"}


def literal(value, dt: DType) -> str:
    """Source of a constant of dtype ``dt``."""
    if dt.is_float:
        v = float(value)
        if v != v:
            text = "math.nan"
        elif v in (float("inf"), float("-inf")):
            text = ("-" if v < 0 else "") + "math.inf"
        else:
            text = repr(v)
        return f"{_NP.get(dt, 'float64')}({text})"
    if dt is DType.bool:
        return "True" if value else "False"
    return repr(int(value))


def _fn(name):
    return lambda xs, dts, out, a: f"math.{name}({xs[0]})"


def _bin(sym):
    return lambda xs, dts, out, a: f"({xs[0]} {sym} {xs[1]})"


def _div(xs, dts, out, a):
    return f"({xs[0]} / {xs[1]})" if dts[0].is_float else f"int({xs[0]} / {xs[1]})"


def _relu(xs, dts, out, a):
    x = xs[0]
    return f"({x} if {x} > 0 else {literal(0, dts[0])})"


def _sigmoid(xs, dts, out, a):
    # never overflows: exp of a non-positive number only
    x, one = xs[0], literal(1, dts[0])
    return (f"({one} / ({one} + math.exp(-{x})) if {x} >= 0 "
            f"else math.exp({x}) / ({one} + math.exp({x})))")


def _softplus(xs, dts, out, a):
    x = xs[0]
    return f"(math.log1p(math.exp(-abs({x}))) + ({x} if {x} > 0 else {literal(0, dts[0])}))"


def _sign(xs, dts, out, a):
    x, dt = xs[0], dts[0]
    return (f"({literal(1, dt)} if {x} > 0 else ({literal(-1, dt)} if {x} < 0 else "
            f"({literal(0, dt)} if {x} == {x} else {x})))")


def _minmax(pick):
    def f(xs, dts, out, a):
        x, y = xs
        if dts[0].is_float:   # NaN propagates (as numpy's maximum/minimum)
            return f"({x} if ({x} {pick} {y} or {x} != {x}) else {y})"
        return f"({x} if {x} {pick} {y} else {y})"
    return f


def _cmp(sym):
    return lambda xs, dts, out, a: f"({xs[0]} {sym} {xs[1]})"


def _cast(xs, dts, out, a):
    src, x = dts[0], xs[0]
    if src is out:
        return x
    if out is DType.bool:
        return f"({x} != 0)"
    if out.is_float:
        return f"{_NP.get(out, 'float64')}({x})"
    return f"int({x})"


EXPR = {
    "neg": lambda xs, dts, out, a: f"(-{xs[0]})",
    "exp": _fn("exp"),
    "log": _fn("log"),
    "sqrt": _fn("sqrt"),
    "relu": _relu,
    "sigmoid": _sigmoid,
    "tanh": _fn("tanh"),
    "abs": lambda xs, dts, out, a: f"abs({xs[0]})",
    "square": lambda xs, dts, out, a: f"({xs[0]} * {xs[0]})",
    "sign": _sign,
    "floor": _fn("floor"),
    "erf": _fn("erf"),
    "expm1": _fn("expm1"),
    "log1p": _fn("log1p"),
    "softplus": _softplus,
    "add": _bin("+"),
    "sub": _bin("-"),
    "mul": _bin("*"),
    "div": _div,
    "maximum": _minmax(">"),
    "minimum": _minmax("<"),
    "pow": lambda xs, dts, out, a: f"({xs[0]} ** {xs[1]})",
    "greater": _cmp(">"),
    "greater_equal": _cmp(">="),
    "less": _cmp("<"),
    "less_equal": _cmp("<="),
    "equal": _cmp("=="),
    "not_equal": _cmp("!="),
    "logical_and": lambda xs, dts, out, a: f"({xs[0]} and {xs[1]})",
    "logical_or": lambda xs, dts, out, a: f"({xs[0]} or {xs[1]})",
    "logical_not": lambda xs, dts, out, a: f"(not {xs[0]})",
    "where": lambda xs, dts, out, a: f"({xs[1]} if {xs[0]} else {xs[2]})",
    "broadcast_to": lambda xs, dts, out, a: xs[0],
    "copy": lambda xs, dts, out, a: xs[0],
    "cast": _cast,
}
