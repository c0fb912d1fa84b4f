"""Vectorizable float32 transcendentals: exp, tanh and erf without a libm call.

A libm call per element stops the loop vectorizer; these are straight-line IR
(polynomials, a floor, integer bit tricks), so loops over them vectorize, and they
work on scalars and vectors alike. float64 keeps the LLVM intrinsics / libm.

exp (Cephes expf): x = n*ln2 + r with |r| <= ln2/2 (ln2 split in two constants so the
reduction is exact), e^r by a degree-6 polynomial, times 2^n built from the exponent
bits -- as 2^(n/2) * 2^(n - n/2) so results in the subnormal range come out right.
Measured max error 1 ulp (tanh 1.2 ulp) over [-110, 90]; x > 88.72 gives inf,
x < -103.97 gives 0, NaN stays NaN.

tanh (Cephes tanhf): for |x| < 0.625 an odd polynomial (no cancellation near 0),
else (1 - e)/(1 + e) with e = e^(-2|x|) and the sign of x; both computed, one
selected. sigmoid: (x >= 0 ? 1 : e)/(1 + e) with e = e^(-|x|). Both take the
non-positive exp (``exp_nonpositive``: no overflow to handle, one 2^n) -- an LSTM
cell's five gates cost half as much as with the full exp.

erf: x * P(x^2) / Q(x^2), degrees 5 and 6 -- a rational fit of erf(x)/x on
[0, 3.92] made for kiln (weighted least squares iterated towards equal relative error;
2.4e-9 in float64), within 7 ulp when evaluated in float32; |x| >= 3.92 gives +-1 (erf
is 1 to float32 precision there), NaN stays NaN. GELU's erf, which was a libm call per
element (a loop that never vectorized).
"""
from __future__ import annotations

import llvmlite.ir as ll

from ... import target as targets
from ...ir.types import DType
from .emit import splat

F32 = ll.FloatType()
I32 = ll.IntType(32)


def fma(b, m: ll.Module, x, y, z):
    """x*y + z (scalars or vectors of float/double): rounded once (``llvm.fma``) where
    the target has FMA, else the product rounded, then the sum. Never ``contract``
    flags, which let the optimizer choose: the result is fixed by the IR, so code
    compiled at any optimization level (the quick and optimized tiers of
    ``kiln.compile``, the AOT library) rounds the same way."""
    if not targets.current().has_fma:
        return b.fadd(b.fmul(x, y), z)
    return b.call(_intrinsic(m, "llvm.fma", x.type, 3), [x, y, z])


def _c(t, v):
    """A constant of scalar or vector type ``t`` (splatted)."""
    if isinstance(t, ll.VectorType):
        return splat(t, v)
    return ll.Constant(t, v)


def _int_type_like(t):
    return ll.VectorType(I32, t.count) if isinstance(t, ll.VectorType) else I32


def _intrinsic(m: ll.Module, name: str, t, nargs: int = 1):
    """The overload of intrinsic ``name`` taking ``nargs`` operands of float type ``t``
    (float or double, scalar or vector; llvmlite's ``declare_intrinsic`` cannot name
    vector overloads)."""
    el = t.element if isinstance(t, ll.VectorType) else t
    kind = "f32" if isinstance(el, ll.FloatType) else "f64"
    full = f"{name}.v{t.count}{kind}" if isinstance(t, ll.VectorType) else f"{name}.{kind}"
    return m.globals.get(full) or ll.Function(m, ll.FunctionType(t, [t] * nargs), full)


def _pow2(b, n_float, t):
    """2^n for an integral-valued float n in [-126, 127] (exponent bits)."""
    it = _int_type_like(t)
    n = b.fptosi(n_float, it)
    bits = b.shl(b.add(n, _c(it, 127)), _c(it, 23))
    return b.bitcast(bits, t)


def _horner(b, m, coeffs, z, t):
    """coeffs[0] + coeffs[1]*z + ... by Horner's rule, one ``fma`` per step."""
    p = _c(t, coeffs[-1])
    for coeff in coeffs[-2::-1]:
        p = fma(b, m, p, z, _c(t, coeff))
    return p


def _exp_poly(b, m, r, t):
    """e^r for |r| <= ln2/2: 1 + r + r^2 * p(r), Cephes' degree-6 polynomial."""
    p = _horner(b, m, (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3,
                       1.3981999507e-3, 1.9875691500e-4), r, t)
    return b.fadd(fma(b, m, p, b.fmul(r, r), r), _c(t, 1.0))


def exp(b, m: ll.Module, x, dt: DType = DType.f32):
    if dt is not DType.f32:
        t = x.type
        return b.call(m.declare_intrinsic("llvm.exp", [t]), [x])
    t = x.type
    xc = b.select(b.fcmp_ordered(">", x, _c(t, 88.72283905206835)), _c(t, 88.72283905206835), x)
    xc = b.select(b.fcmp_ordered("<", xc, _c(t, -103.972)), _c(t, -103.972), xc)
    n = b.call(_intrinsic(m, "llvm.floor", t), [b.fadd(b.fmul(xc, _c(t, 1.44269504088896341)),
                                                        _c(t, 0.5))])
    r = b.fsub(xc, b.fmul(n, _c(t, 0.693359375)))
    r = b.fsub(r, b.fmul(n, _c(t, -2.12194440e-4)))
    y = _exp_poly(b, m, r, t)
    half = b.call(_intrinsic(m, "llvm.floor", t), [b.fmul(n, _c(t, 0.5))])
    y = b.fmul(b.fmul(y, _pow2(b, half, t)), _pow2(b, b.fsub(n, half), t))
    y = b.select(b.fcmp_ordered(">", x, _c(t, 88.72283905206835)), _c(t, float("inf")), y)
    y = b.select(b.fcmp_ordered("<", x, _c(t, -103.972)), _c(t, 0.0), y)   # below the subnormals
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def exp_nonpositive(b, m: ll.Module, x, dt: DType = DType.f32):
    """exp(x) for x <= 0 or NaN (a softmax's x - max): half the work of ``exp``. No
    overflow to handle; x = n*ln2 + r with n = round(x*log2(e)) (|r| <= ln2/2, the same
    polynomial), 2^n from the exponent bits once; results below the normal range
    (x < -87.3) are 0 -- next to the row's largest term, 1, they are below float32's
    resolution anyway. -inf gives 0, NaN stays NaN. Any x > 0 is out of contract."""
    if dt is not DType.f32:
        return exp(b, m, x, dt)
    t = x.type
    x = b.select(b.fcmp_ordered("<", x, _c(t, -104.0)), _c(t, -104.0), x)    # -inf: finite n
    n = b.call(_intrinsic(m, "llvm.roundeven", t), [b.fmul(x, _c(t, 1.44269504088896341))])
    r = fma(b, m, n, _c(t, -0.693359375), x)           # x - n*ln2, each step rounded once
    r = fma(b, m, n, _c(t, 2.12194440e-4), r)
    y = _exp_poly(b, m, r, t)
    nc = b.select(b.fcmp_unordered("<", n, _c(t, -126.0)), _c(t, 0.0), n)   # NaN: 2^0, y is NaN
    return b.select(b.fcmp_ordered("<", n, _c(t, -126.0)), _c(t, 0.0), b.fmul(y, _pow2(b, nc, t)))


def tanh(b, m: ll.Module, x, dt: DType = DType.f32):
    if dt is not DType.f32:
        return _libm(b, m, "tanh", x)
    t = x.type
    ax = b.call(_intrinsic(m, "llvm.fabs", t), [x])
    z = b.fmul(x, x)
    p = _horner(b, m, (-3.33332819422e-1, 1.33314422036e-1, -5.37397155531e-2, 2.06390887954e-2,
                       -5.70498872745e-3), z, t)
    small = b.fadd(b.fmul(b.fmul(p, z), x), x)
    e = exp_nonpositive(b, m, b.fmul(ax, _c(t, -2.0)))       # e^(-2|x|) <= 0.29 here
    big = b.fdiv(b.fsub(_c(t, 1.0), e), b.fadd(e, _c(t, 1.0)))
    big = b.call(_copysign(m, t), [big, x])
    return b.select(b.fcmp_ordered("<", ax, _c(t, 0.625)), small, big)


def sigmoid(b, m: ll.Module, x, dt: DType = DType.f32):
    """1 / (1 + e^-x) as (x >= 0 ? 1 : e) / (1 + e) with e = e^-|x| <= 1: the
    non-positive exp (half the work of ``exp``) and one division. NaN stays NaN."""
    if dt is not DType.f32:
        return b.fdiv(_c(x.type, 1.0), b.fadd(_c(x.type, 1.0), exp(b, m, b.fneg(x), dt)))
    t = x.type
    e = exp_nonpositive(b, m, b.fneg(b.call(_intrinsic(m, "llvm.fabs", t), [x])))
    num = b.select(b.fcmp_ordered(">=", x, _c(t, 0.0)), _c(t, 1.0), e)
    return b.fdiv(num, b.fadd(e, _c(t, 1.0)))


def _libm(b, m: ll.Module, name: str, x):
    """A call of libm's (double) ``name``: float64 keeps the library's."""
    t = x.type
    fn = m.globals.get(name) or ll.Function(m, ll.FunctionType(t, [t]), name)
    return b.call(fn, [x])


def _copysign(m, t):
    return _intrinsic(m, "llvm.copysign", t, 2)


_ERF_P = (1.1283791696, 0.1924112002, 0.055563603382, 0.0041909356762, 0.00040512092297,
          6.5658187113e-06)
_ERF_Q = (1.0, 0.50385340646, 0.11719253053, 0.016203933435, 0.0014059998882,
          7.0948307098e-05, 2.4770238566e-07)
_ERF_ONE = 3.92      # erf(3.92) = 1 - 5.6e-8: 1.0 in float32


def erf(b, m: ll.Module, x, dt: DType = DType.f32):
    if dt is not DType.f32:
        return _libm(b, m, "erf", x)
    t = x.type
    xc = b.select(b.fcmp_ordered(">", x, _c(t, _ERF_ONE)), _c(t, _ERF_ONE), x)
    xc = b.select(b.fcmp_ordered("<", xc, _c(t, -_ERF_ONE)), _c(t, -_ERF_ONE), xc)
    z = b.fmul(xc, xc)
    y = b.fdiv(b.fmul(xc, _horner(b, m, _ERF_P, z, t)), _horner(b, m, _ERF_Q, z, t))
    ax = b.call(_intrinsic(m, "llvm.fabs", t), [x])
    one = b.call(_copysign(m, t), [_c(t, 1.0), x])
    return b.select(b.fcmp_ordered(">=", ax, _c(t, _ERF_ONE)), one, y)    # NaN: y is NaN
