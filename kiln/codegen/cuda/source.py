"""Small helpers for writing kernel source: indented lines, symbolic sizes as Python
expressions over the kernel's symbol arguments, index (un)flattening and the
evaluation of a fused group's elementwise DAG at one point."""
from __future__ import annotations

import re

from ...ir.types import Affine, is_symbol
from .scalar import EXPR, literal


def sym(s: str) -> str:
    """The kernel argument holding the value of symbol ``s``."""
    return "d_" + re.sub(r"\W", "_", s)


def aff(a) -> str:
    """Source of a dim, an Affine or a Poly-like monomial."""
    if isinstance(a, int):
        return str(a)
    if is_symbol(a):
        return sym(a)
    if isinstance(a, Affine):
        if a.coeff == 0:
            return "0"
        parts = ([str(a.coeff)] if a.coeff != 1 or not a.syms else []) + [sym(s) for s in a.syms]
        return "*".join(parts) if len(parts) == 1 else "(" + "*".join(parts) + ")"
    raise TypeError(f"not a size: {a!r}")


def numel(shape) -> str:
    return aff(Affine.product(shape))


class Src:
    """Lines of Python source with indentation."""

    def __init__(self):
        self.lines: list = []
        self.depth = 0

    def __call__(self, line: str):
        self.lines.append("    " * self.depth + line)

    def indent(self):
        self.depth += 1

    def dedent(self):
        self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def unflatten(src: Src, flat: str, shape, prefix: str) -> list:
    """Emit the multi-index of row-major ``flat`` over ``shape``; returns the names."""
    names = [f"{prefix}{k}" for k in range(len(shape))]
    if not shape:
        return names
    src(f"r_ = {flat}")
    for k in range(len(shape) - 1, 0, -1):
        d = aff(shape[k])
        src(f"{names[k]} = r_ % {d}")
        src(f"r_ = r_ // {d}")
    src(f"{names[0]} = r_")
    return names


def offset(idx: list, strides: list) -> str:
    terms = []
    for i, s in zip(idx, strides):
        if isinstance(s, Affine) and s.coeff == 0:
            continue
        st = aff(s)
        terms.append(i if st == "1" else f"{i}*{st}")
    return " + ".join(terms) if terms else "0"


def is_inline_constant(n) -> bool:
    return n.op.family == "constant" and n.attrs["value"].size == 1


def dag(src: Src, nodes, env: dict, skip=(), prefix: str = "t"):
    """Emit one local per elementwise node of ``nodes`` (in order; ``skip`` excepted);
    ``env`` maps values already available (loaded leaves, a master's result) to
    expressions and receives the new ones."""
    for k, n in enumerate(nodes):
        if n in skip:
            continue
        v = n.outputs[0]
        if is_inline_constant(n):
            env[v] = literal(n.attrs["value"].reshape(()).item(), v.type.dtype)
            continue
        fn = EXPR.get(n.op.name)
        if fn is None:
            raise NotImplementedError(f"no CUDA scalar code for op {n.op.name}")
        xs = [env[u] for u in n.inputs]
        name = f"{prefix}{k}"
        src(f"{name} = {fn(xs, tuple(u.type.dtype for u in n.inputs), v.type.dtype, n.attrs.as_dict())}")
        env[v] = name
