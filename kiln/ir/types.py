"""Element types and tensor types of the IR.

A dimension is an ``int`` or a symbol (a ``str``; the batch dimension is ``"N"``).
Symbols are bound to integers when a graph runs (from the shapes of its inputs), so
one compiled graph serves every batch size.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Union

import numpy as np

Dim = Union[int, str]
BATCH = "N"


class DType(enum.Enum):
    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"

    @property
    def np(self) -> np.dtype:
        return np.dtype(_TO_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f64)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @staticmethod
    def from_numpy(dt) -> "DType":
        dt = np.dtype(dt)
        for k, v in _TO_NUMPY.items():
            if np.dtype(v) == dt:
                return k
        raise TypeError(f"no kiln dtype for numpy dtype {dt} (expected one of "
                        f"{', '.join(str(np.dtype(v)) for v in _TO_NUMPY.values())})")

    @staticmethod
    def parse(s: str) -> "DType":
        try:
            return DType(s)
        except ValueError:
            raise ValueError(f"unknown dtype {s!r} (expected one of "
                             f"{', '.join(d.value for d in DType)})") from None

    def __str__(self) -> str:
        return self.value


_TO_NUMPY = {DType.f32: "float32", DType.f64: "float64", DType.i32: "int32",
             DType.i64: "int64", DType.bool: "bool"}


def is_symbol(d: Dim) -> bool:
    return isinstance(d, str)


def check_dim(d) -> Dim:
    if isinstance(d, (bool, np.bool_)):
        raise TypeError(f"dimension must be an int >= 0 or a symbol name, got {d!r}")
    if isinstance(d, (int, np.integer)):
        if d < 0:
            raise ValueError(f"dimension must be >= 0, got {d}")
        return int(d)
    if isinstance(d, str) and d.isidentifier():
        return d
    raise TypeError(f"dimension must be an int >= 0 or a symbol name, got {d!r}")


@dataclass(frozen=True)
class TensorType:
    shape: tuple
    dtype: DType = DType.f32

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(check_dim(d) for d in self.shape))
        if not isinstance(self.dtype, DType):
            object.__setattr__(self, "dtype", DType.parse(str(self.dtype)))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def symbols(self) -> tuple:
        return tuple(d for d in self.shape if is_symbol(d))

    @property
    def is_static(self) -> bool:
        return not self.symbols

    def concrete(self, bindings: Mapping[str, int]) -> tuple:
        """The shape with every symbol replaced by its bound value."""
        try:
            return tuple(bindings[d] if is_symbol(d) else d for d in self.shape)
        except KeyError as e:
            raise ValueError(f"symbol {e.args[0]} of type {self} is not bound") from None

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


def f32(*shape) -> TensorType:
    return TensorType(shape, DType.f32)


def numel(shape) -> "Affine":
    """Number of elements of a shape as an affine-in-symbols product (see Affine)."""
    return Affine.product(shape)


class Affine:
    """A monomial ``coeff * prod(symbols)``: element counts and strides of symbolic shapes.

    Used for reshape inference (``[N,28,28] -> [N,-1]`` gives ``-1 = 784``) and for
    buffer sizes, which are linear in the batch dimension.
    """

    __slots__ = ("coeff", "syms")

    def __init__(self, coeff: int, syms: tuple = ()):
        self.coeff = coeff
        self.syms = tuple(sorted(syms)) if coeff else ()

    @staticmethod
    def product(shape) -> "Affine":
        c, s = 1, []
        for d in shape:
            if isinstance(d, Affine):
                c *= d.coeff
                s.extend(d.syms)
            elif is_symbol(d):
                s.append(d)
            else:
                c *= d
        return Affine(c, tuple(s))

    def __mul__(self, other) -> "Affine":
        if isinstance(other, Affine):
            return Affine(self.coeff * other.coeff, self.syms + other.syms)
        if is_symbol(other):
            return Affine(self.coeff, self.syms + (other,))
        return Affine(self.coeff * int(other), self.syms)

    @property
    def is_const(self) -> bool:
        return not self.syms or self.coeff == 0

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        v = self.coeff
        for s in self.syms:
            v *= bindings[s]
        return v

    def __eq__(self, other) -> bool:
        return isinstance(other, Affine) and (self.coeff, self.syms) == (other.coeff, other.syms)

    def __hash__(self):
        return hash((self.coeff, self.syms))

    def __repr__(self) -> str:
        return "*".join([str(self.coeff), *self.syms])


class Poly:
    """A polynomial in the symbols with integer coefficients, {sorted symbol tuple: coeff}:
    byte sizes and arena offsets (``2048*N+64``)."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict | None = None):
        self.terms = {tuple(sorted(k)): v for k, v in (terms or {}).items() if v}

    @staticmethod
    def of(a: Affine) -> "Poly":
        return Poly({a.syms: a.coeff})

    def __add__(self, other: "Poly") -> "Poly":
        t = dict(self.terms)
        for k, v in other.terms.items():
            t[k] = t.get(k, 0) + v
        return Poly(t)

    def __sub__(self, other: "Poly") -> "Poly":
        return self + Poly({k: -v for k, v in other.terms.items()})

    def __eq__(self, other):
        return isinstance(other, Poly) and self.terms == other.terms

    def __hash__(self):
        return hash(tuple(sorted(self.terms.items())))

    def nonneg(self) -> bool:
        """True when >= 0 for every value of the symbols >= 0 (coefficient-wise)."""
        return all(c >= 0 for c in self.terms.values())

    def le(self, other: "Poly") -> bool:
        return (other - self).nonneg()

    @staticmethod
    def termwise_max(polys) -> "Poly":
        t: dict = {}
        for p in polys:
            for k, v in p.terms.items():
                t[k] = max(t.get(k, 0), v)
        return Poly(t)

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        return sum(Affine(c, s).evaluate(bindings) for s, c in self.terms.items())

    def substitute(self, sym: str, value: int) -> "Poly":
        """This polynomial with ``sym`` set to ``value`` (a Poly in the other symbols)."""
        out: dict = {}
        for syms, c in self.terms.items():
            rest = tuple(s for s in syms if s != sym)
            out[rest] = out.get(rest, 0) + c * value ** (len(syms) - len(rest))
        return Poly(out)

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts = ["*".join([str(c), *s])
                 for s, c in sorted(self.terms.items(), key=lambda kv: (-len(kv[0]), kv[0]))]
        return "+".join(parts).replace("+-", "-")

    __repr__ = __str__
