"""Scalar semantics of the elementwise ops: op name -> emitter of one element.

Each emitter takes the IRBuilder, the module (for intrinsics and libm), the operand
values, the operand dtype and the node's attributes, and returns the result value.
Float math uses LLVM intrinsics where they exist (they vectorize or lower to libm);
tanh calls libm's tanhf/tanh, which the JIT resolves in process and AOT links with -lm.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.types import DType
from .emit import LLTYPE, const


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
    return lambda b, m, xs, dt, attrs: b.call(_intrinsic(m, name, dt), xs)


def _neg(b, m, xs, dt, attrs):
    return b.fneg(xs[0]) if dt.is_float else b.neg(xs[0])


def _relu(b, m, xs, dt, attrs):
    x = xs[0]
    if dt.is_float:
        # x > 0 ? x : 0, with NaN propagated as numpy's maximum(x, 0) does
        keep = b.fcmp_unordered(">", x, const(dt, 0))
        return b.select(keep, x, const(dt, 0))
    return b.select(b.icmp_signed(">", x, const(dt, 0)), x, const(dt, 0))


def _sigmoid(b, m, xs, dt, attrs):
    # 1 / (1 + exp(-x)): exp overflows to inf for very negative x, giving 0 as it should
    e = b.call(_intrinsic(m, "llvm.exp", dt), [b.fneg(xs[0])])
    return b.fdiv(const(dt, 1), b.fadd(const(dt, 1), e))


def _tanh(b, m, xs, dt, attrs):
    return b.call(_libm(m, "tanh", dt), xs)


def _arith(fop, iop):
    def emit(b, m, xs, dt, attrs):
        return getattr(b, fop)(*xs) if dt.is_float else getattr(b, iop)(*xs)
    return emit


def _minmax(intr, pred):
    def emit(b, m, xs, dt, attrs):
        if dt.is_float:  # llvm.maximum/minimum propagate NaN, as numpy does
            t = LLTYPE[dt]
            return b.call(m.declare_intrinsic(intr, [t], ll.FunctionType(t, [t, t])), xs)
        return b.select(b.icmp_signed(pred, xs[0], xs[1]), xs[0], xs[1])
    return emit


def _cast(b, m, xs, src, attrs):
    dst = attrs["dtype"]
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


SCALAR = {
    "neg": _neg,
    "exp": _unary_intr("llvm.exp"),
    "log": _unary_intr("llvm.log"),
    "sqrt": _unary_intr("llvm.sqrt"),
    "relu": _relu,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "add": _arith("fadd", "add"),
    "sub": _arith("fsub", "sub"),
    "mul": _arith("fmul", "mul"),
    "div": _arith("fdiv", "sdiv"),
    "maximum": _minmax("llvm.maximum", ">"),
    "minimum": _minmax("llvm.minimum", "<"),
    "cast": _cast,
    "copy": lambda b, m, xs, dt, attrs: xs[0],
}
