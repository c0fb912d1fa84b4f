"""Scalar semantics of the elementwise ops: op name -> emitter of one element (SCALAR),
and the same on whole vectors for the ops kernels run on registers (VECTOR).

Each SCALAR emitter is ``emit(b, m, xs, dts, out, attrs)``: the IRBuilder, the module (for
intrinsics and libm), the operand values, the operand dtypes (a tuple, one per
operand), the result dtype and the node's attributes; it returns the result value
(bool results are i8 0/1, as bools are stored). Float math uses LLVM intrinsics where
they exist (they vectorize or lower to libm); float32 exp, tanh and erf are vmath.py's
polynomials (loops over them vectorize); expm1, log1p and float64 tanh and erf call
libm, which the JIT resolves in process and AOT links with -lm.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.types import DType
from . import vmath
from .emit import LLTYPE, const, splat


def _intrinsic(m: ll.Module, name: str, dt: DType):
    return m.declare_intrinsic(name, [LLTYPE[dt]])


def _libm(m: ll.Module, base: str, dt: DType):
    name = base + ("f" if dt is DType.f32 else "")
    fn = m.globals.get(name)
    if fn is None:
        t = LLTYPE[dt]
        fn = ll.Function(m, ll.FunctionType(t, [t]), name)
    return fn


def _unary_intr(name):
    return lambda b, m, xs, dts, out, attrs: b.call(_intrinsic(m, name, dts[0]), xs)


def _unary_libm(base):
    return lambda b, m, xs, dts, out, attrs: b.call(_libm(m, base, dts[0]), xs)


def _neg(b, m, xs, dts, out, attrs):
    return b.fneg(xs[0]) if dts[0].is_float else b.neg(xs[0])


def _relu(b, m, xs, dts, out, attrs):
    x, dt = xs[0], dts[0]
    if dt.is_float:
        # x > 0 ? x : 0, with NaN propagated as numpy's maximum(x, 0) does
        keep = b.fcmp_unordered(">", x, const(dt, 0))
        return b.select(keep, x, const(dt, 0))
    return b.select(b.icmp_signed(">", x, const(dt, 0)), x, const(dt, 0))


def _arith(fop, iop):
    def emit(b, m, xs, dts, out, attrs):
        return getattr(b, fop)(*xs) if dts[0].is_float else getattr(b, iop)(*xs)
    return emit


def _minmax(intr, pred):
    def emit(b, m, xs, dts, out, attrs):
        dt = dts[0]
        if dt.is_float:  # llvm.maximum/minimum propagate NaN, as numpy does
            t = LLTYPE[dt]
            return b.call(m.declare_intrinsic(intr, [t], ll.FunctionType(t, [t, t])), xs)
        return b.select(b.icmp_signed(pred, xs[0], xs[1]), xs[0], xs[1])
    return emit


def _cast(b, m, xs, dts, out, attrs):
    src, dst = dts[0], out
    x = xs[0]
    tgt = LLTYPE[dst]
    if src is dst:
        return x
    if dst is DType.bool:
        nz = b.fcmp_unordered("!=", x, const(src, 0)) if src.is_float else b.icmp_signed("!=", x, const(src, 0))
        return b.zext(nz, tgt)
    if src is DType.bool:
        return b.uitofp(x, tgt) if dst.is_float else b.zext(x, tgt)
    if src.is_float and dst.is_float:
        return b.fptrunc(x, tgt) if src.itemsize > dst.itemsize else b.fpext(x, tgt)
    if src.is_float:
        return b.fptosi(x, tgt)
    if dst.is_float:
        return b.sitofp(x, tgt)
    return b.trunc(x, tgt) if src.itemsize > dst.itemsize else b.sext(x, tgt)


def _abs(b, m, xs, dts, out, attrs):
    x, dt = xs[0], dts[0]
    if dt.is_float:
        return b.call(_intrinsic(m, "llvm.fabs", dt), xs)
    return b.select(b.icmp_signed("<", x, const(dt, 0)), b.neg(x), x)


def _square(b, m, xs, dts, out, attrs):
    return b.fmul(xs[0], xs[0]) if dts[0].is_float else b.mul(xs[0], xs[0])


def _sign(b, m, xs, dts, out, attrs):
    x, dt = xs[0], dts[0]
    if dt.is_float:  # +-0 -> +0, NaN -> NaN (numpy)
        r = b.select(b.fcmp_ordered(">", x, const(dt, 0)), const(dt, 1), const(dt, 0))
        r = b.select(b.fcmp_ordered("<", x, const(dt, 0)), const(dt, -1), r)
        return b.select(b.fcmp_unordered("uno", x, x), x, r)
    r = b.select(b.icmp_signed(">", x, const(dt, 0)), const(dt, 1), const(dt, 0))
    return b.select(b.icmp_signed("<", x, const(dt, 0)), const(dt, -1), r)


def _softplus(b, m, xs, dts, out, attrs):
    # log1p(exp(-|x|)) + max(x, 0): never overflows
    x, dt = xs[0], dts[0]
    e = vmath.exp(b, m, b.fneg(b.call(_intrinsic(m, "llvm.fabs", dt), [x])), dt)
    pos = b.select(b.fcmp_unordered(">", x, const(dt, 0)), x, const(dt, 0))
    return b.fadd(b.call(_libm(m, "log1p", dt), [e]), pos)


def _pow(b, m, xs, dts, out, attrs):
    t = LLTYPE[dts[0]]
    return b.call(m.declare_intrinsic("llvm.pow", [t], ll.FunctionType(t, [t, t])), xs)


def _compare(pred):
    def emit(b, m, xs, dts, out, attrs):
        dt = dts[0]
        if dt.is_float:  # ordered (false with NaN), but != is unordered (true with NaN)
            c = (b.fcmp_unordered if pred == "!=" else b.fcmp_ordered)(pred, *xs)
        elif dt is DType.bool:
            c = b.icmp_unsigned(pred, *xs)
        else:
            c = b.icmp_signed(pred, *xs)
        return b.zext(c, LLTYPE[out])
    return emit


def _where(b, m, xs, dts, out, attrs):
    c, x, y = xs
    return b.select(b.icmp_unsigned("!=", c, const(dts[0], 0)), x, y)


def _copy(b, m, xs, dts, out, attrs):
    return xs[0]


SCALAR = {
    "neg": _neg,
    "exp": lambda b, m, xs, dts, out, attrs: vmath.exp(b, m, xs[0], dts[0]),
    "log": _unary_intr("llvm.log"),
    "sqrt": _unary_intr("llvm.sqrt"),
    "relu": _relu,
    "sigmoid": lambda b, m, xs, dts, out, attrs: vmath.sigmoid(b, m, xs[0], dts[0]),
    "tanh": lambda b, m, xs, dts, out, attrs: vmath.tanh(b, m, xs[0], dts[0]),
    "abs": _abs,
    "square": _square,
    "sign": _sign,
    "floor": _unary_intr("llvm.floor"),
    "erf": lambda b, m, xs, dts, out, attrs: vmath.erf(b, m, xs[0], dts[0]),
    "expm1": _unary_libm("expm1"),
    "log1p": _unary_libm("log1p"),
    "softplus": _softplus,
    "add": _arith("fadd", "add"),
    "sub": _arith("fsub", "sub"),
    "mul": _arith("fmul", "mul"),
    "div": _arith("fdiv", "sdiv"),
    "maximum": _minmax("llvm.maximum", ">"),
    "minimum": _minmax("llvm.minimum", "<"),
    "pow": _pow,
    "greater": _compare(">"),
    "greater_equal": _compare(">="),
    "less": _compare("<"),
    "less_equal": _compare("<="),
    "equal": _compare("=="),
    "not_equal": _compare("!="),
    "logical_and": lambda b, m, xs, dts, out, attrs: b.and_(*xs),   # bools are 0/1
    "logical_or": lambda b, m, xs, dts, out, attrs: b.or_(*xs),
    "logical_not": lambda b, m, xs, dts, out, attrs: b.xor(xs[0], const(DType.bool, 1)),
    "where": _where,
    "broadcast_to": _copy,   # the operand is walked with broadcast strides
    "cast": _cast,
    "copy": _copy,
}


def _vector_minmax(intr):
    def emit(b, m, xs):     # NaN propagated, as _minmax's (and numpy's)
        return b.call(vmath._intrinsic(m, intr, xs[0].type, 2), xs)
    return emit


def _vector_relu(b, m, xs):     # as _relu: x > 0 ? x : 0, NaN kept
    zero = splat(xs[0].type, 0.0)
    return b.select(b.fcmp_unordered(">", xs[0], zero), xs[0], zero)


def _vector_unary(intr):
    return lambda b, m, xs: b.call(vmath._intrinsic(m, intr, xs[0].type), xs)


def _vector_compare(pred):      # bools as i8 0/1 lanes, as _compare's
    def emit(b, m, xs):
        c = (b.fcmp_unordered if pred == "!=" else b.fcmp_ordered)(pred, *xs)
        return b.zext(c, ll.VectorType(ll.IntType(8), xs[0].type.count))
    return emit


def _vector_where(b, m, xs):
    c, x, y = xs
    return b.select(b.icmp_unsigned("!=", c, splat(c.type, 0)), x, y)


#: The same semantics on float32 vectors (and the bools of comparisons, as i8 lanes), for
#: the ops a kernel may run on whole registers: ``emit(b, m, xs)``, each the same
#: operation per lane as its SCALAR emitter above -- vmath's polynomials are the same
#: code on vectors -- so vector and scalar code give the same bits (a GEMM's register
#: epilogue, kiln/codegen/llvm/fused.py; an LSTM cell's gates, kernels_lstm.py)
VECTOR = {
    "exp": lambda b, m, xs: vmath.exp(b, m, xs[0]),
    "sigmoid": lambda b, m, xs: vmath.sigmoid(b, m, xs[0]),
    "tanh": lambda b, m, xs: vmath.tanh(b, m, xs[0]),
    "erf": lambda b, m, xs: vmath.erf(b, m, xs[0]),
    "sqrt": _vector_unary("llvm.sqrt"),
    "abs": _vector_unary("llvm.fabs"),
    "greater": _vector_compare(">"),
    "greater_equal": _vector_compare(">="),
    "less": _vector_compare("<"),
    "less_equal": _vector_compare("<="),
    "equal": _vector_compare("=="),
    "not_equal": _vector_compare("!="),
    "where": _vector_where,
    "add": lambda b, m, xs: b.fadd(*xs),
    "sub": lambda b, m, xs: b.fsub(*xs),
    "mul": lambda b, m, xs: b.fmul(*xs),
    "div": lambda b, m, xs: b.fdiv(*xs),
    "neg": lambda b, m, xs: b.fneg(xs[0]),
    "square": lambda b, m, xs: b.fmul(xs[0], xs[0]),
    "relu": _vector_relu,
    "maximum": _vector_minmax("llvm.maximum"),
    "minimum": _vector_minmax("llvm.minimum"),
    "broadcast_to": lambda b, m, xs: xs[0],
    "copy": lambda b, m, xs: xs[0],
}
