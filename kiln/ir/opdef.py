"""Op definitions: one declaration per op, with everything about it together.

An op is a subclass of ``OpDef`` registered with ``@register``. Its declaration holds

- ``name`` and typed ``attrs`` (``Attr`` specs; node attributes are validated,
  normalized and frozen against them),
- ``infer(*types, **attrs)``: type inference, raising ``OpTypeError`` on bad input,
- ``reference(*arrays, **attrs)``: the numpy implementation the interpreter runs,
- ``vjp``: the vector-Jacobian product, as IR built from other ops ([training]),
- ``kind``: the fusion pattern kind, and ``family``: the kernel family codegen looks
  up to lower it (codegen owns the kernels; the op only names its family).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .types import DType, TensorType, check_dim


class OpTypeError(ValueError):
    """Type inference failed: the op's operands or attributes do not fit."""


class Kind(enum.Enum):
    """Fusion pattern kind (as TVM): decides what may fuse with what."""
    ELEMENTWISE = "elementwise"
    BROADCAST = "broadcast"
    INJECTIVE = "injective"
    REDUCTION = "reduction"
    OUT_FUSABLE = "out_fusable"
    OPAQUE = "opaque"


class AttrKind(enum.Enum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    INTS = "ints"        # tuple of ints, e.g. axes, perm
    SHAPE = "shape"      # tuple of dims: ints (-1 allowed) and symbols
    DTYPE = "dtype"
    TENSOR = "tensor"    # a numpy array (constants)


_REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    name: str
    kind: AttrKind
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def normalize(self, op: str, v):
        """Check ``v`` against this spec and return its frozen canonical form."""
        k = self.kind
        bad = OpTypeError(f"{op}: attribute {self.name} expects {k.value}, got {v!r}")
        if k is AttrKind.INT:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise bad
            return int(v)
        if k is AttrKind.FLOAT:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
                raise bad
            return float(v)
        if k is AttrKind.BOOL:
            if not isinstance(v, (bool, np.bool_)):
                raise bad
            return bool(v)
        if k is AttrKind.STR:
            if not isinstance(v, str):
                raise bad
            return v
        if k is AttrKind.DTYPE:
            if isinstance(v, DType):
                return v
            if isinstance(v, str):
                return DType.parse(v)
            raise bad
        if k is AttrKind.INTS:
            if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                v = (v,)
            if not isinstance(v, (tuple, list)) or any(
                    isinstance(e, (bool, np.bool_)) or not isinstance(e, (int, np.integer)) for e in v):
                raise bad
            return tuple(int(e) for e in v)
        if k is AttrKind.SHAPE:
            if not isinstance(v, (tuple, list)):
                raise bad
            out = []
            for e in v:
                if isinstance(e, (int, np.integer)) and not isinstance(e, (bool, np.bool_)) and e == -1:
                    out.append(-1)
                else:
                    try:
                        out.append(check_dim(e))
                    except (TypeError, ValueError):
                        raise bad from None
            return tuple(out)
        if k is AttrKind.TENSOR:
            a = np.array(v)  # copy: the node owns its value
            if a.dtype == object:
                raise bad
            a.setflags(write=False)
            return a
        raise AssertionError(k)


class Attrs:
    """Frozen, ordered attribute mapping of a node (order = the op's spec order)."""

    __slots__ = ("_items",)

    def __init__(self, items: tuple):
        self._items = items

    def __getitem__(self, k):
        for n, v in self._items:
            if n == k:
                return v
        raise KeyError(k)

    def get(self, k, default=None):
        try:
            return self[k]
        except KeyError:
            return default

    def items(self):
        return self._items

    def as_dict(self) -> dict:
        return dict(self._items)

    def key(self):
        """A hashable key (arrays by content), for CSE and comparison."""
        return tuple((n, (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v)
                     for n, v in self._items)

    def __eq__(self, other):
        return isinstance(other, Attrs) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return f"Attrs({dict(self._items)!r})"


class OpDef:
    """Base of every op declaration. Subclasses set the class attributes."""

    name: ClassVar[str]
    attrs: ClassVar[tuple] = ()
    kind: ClassVar[Kind] = Kind.OPAQUE
    family: ClassVar[str] = "opaque"
    num_inputs: ClassVar[int | None] = None   # None: variadic
    num_regions: ClassVar[int] = 0            # >0: infer/reference also get regions=(Graph, ...)

    # Reverse-mode rule, declared next to the op ([training] fills these in):
    #     vjp(self, g, inputs, outputs, cotangents, **attrs) -> list[Value | None]
    # ``g`` is the graph being built; ``inputs``/``outputs`` are the node's values in
    # it; ``cotangents`` holds one Value per output (None where no gradient flows).
    # Return one cotangent per input, built with ``g.op(...)`` (None: not differentiable,
    # e.g. integer operands). The backward graph is ordinary IR.
    vjp = None

    def make_attrs(self, given: dict) -> Attrs:
        specs = {a.name: a for a in self.attrs}
        unknown = set(given) - set(specs)
        if unknown:
            raise OpTypeError(f"{self.name}: unknown attribute(s) {', '.join(sorted(unknown))} "
                              f"(expected {', '.join(specs) or 'none'})")
        items = []
        for a in self.attrs:
            if a.name in given:
                items.append((a.name, a.normalize(self.name, given[a.name])))
            elif a.required:
                raise OpTypeError(f"{self.name}: missing required attribute {a.name}")
            else:
                items.append((a.name, a.default))
        return Attrs(tuple(items))

    def check_arity(self, n: int):
        if self.num_inputs is not None and n != self.num_inputs:
            raise OpTypeError(f"{self.name}: expects {self.num_inputs} operand(s), got {n}")

    def infer(self, *types: TensorType, **attrs):
        raise NotImplementedError

    def reference(self, *arrays: np.ndarray, **attrs):
        raise NotImplementedError

    def __repr__(self):
        return f"<op {self.name}>"


OPS: dict[str, OpDef] = {}


def register(cls):
    """Class decorator: instantiate and register an op declaration."""
    inst = cls()
    if inst.name in OPS:
        raise ValueError(f"op {inst.name} registered twice")
    OPS[inst.name] = inst
    return cls


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise OpTypeError(f"unknown op {name!r}") from None


# -- helpers shared by op declarations -----------------------------------------------

def same_dtype(op: str, *types: TensorType) -> DType:
    dts = {t.dtype for t in types}
    if len(dts) != 1:
        raise OpTypeError(f"{op}: operand dtypes differ: {', '.join(str(t) for t in types)} "
                          f"(insert a cast)")
    return types[0].dtype


def require_float(op: str, t: TensorType):
    if not t.dtype.is_float:
        raise OpTypeError(f"{op}: expects a floating-point operand, got {t}")


def normalize_axis(op: str, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise OpTypeError(f"{op}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def broadcast_shapes(op: str, *types: TensorType) -> tuple:
    """numpy broadcasting over dims that may be symbols (a symbol matches itself or 1)."""
    rank = max(t.rank for t in types)
    out = []
    for i in range(rank):
        dims = [t.shape[i - rank + t.rank] for t in types if i - rank + t.rank >= 0]
        non1 = {d for d in dims if d != 1}
        if len(non1) > 1:
            raise OpTypeError(f"{op}: cannot broadcast {', '.join(str(t) for t in types)} "
                              f"(dimension {i - rank} is {' vs '.join(str(d) for d in dims)})")
        out.append(non1.pop() if non1 else 1)
    return tuple(out)


def fmt_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))
