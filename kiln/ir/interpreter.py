"""The reference interpreter: runs any graph with each op's numpy implementation.

It is the oracle for every pass and backend. Symbols (the batch dimension ``N``)
are bound from the input shapes; each node's result is checked against its
type, so a reference that disagrees with type inference is caught here.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .graph import Graph
from .opdef import AttrKind
from .types import TensorType, is_symbol


def bind_symbols(g: Graph, arrays) -> dict:
    """Bind each symbol of the input types from the given arrays' shapes."""
    b: dict = {}
    for v, a in zip(g.inputs, arrays):
        if a.ndim != v.type.rank:
            raise ValueError(f"input %{v.name}: expected rank {v.type.rank} ({v.type}), "
                             f"got shape {a.shape}")
        for d, n in zip(v.type.shape, a.shape):
            if is_symbol(d):
                if b.setdefault(d, n) != n:
                    raise ValueError(f"input %{v.name}: symbol {d} is {b[d]} elsewhere, "
                                     f"got {n} in shape {a.shape}")
            elif d != n:
                raise ValueError(f"input %{v.name}: expected shape {v.type}, got {a.shape}")
    return b


def concrete_attrs(node, bindings) -> dict:
    out = {}
    specs = {a.name: a for a in node.op.attrs}
    for k, v in node.attrs.items():
        if specs[k].kind is AttrKind.SHAPE:
            v = tuple(bindings[d] if is_symbol(d) else d for d in v)
        out[k] = v
    return out


def interpret(g: Graph, *inputs, params: Mapping[str, np.ndarray] | None = None,
              return_updates: bool = False):
    """Run ``g`` on numpy inputs; returns one array, or a tuple for several outputs.
    With ``return_updates``, returns ``(outputs, {param name: new value})`` for the
    graph's state updates (the interpreter never changes the values it was given)."""
    if len(inputs) != len(g.inputs):
        raise ValueError(f"graph @{g.name} takes {len(g.inputs)} input(s), got {len(inputs)}")
    arrays = [np.asarray(x, dtype=v.type.dtype.np) for v, x in zip(g.inputs, inputs)]
    bindings = bind_symbols(g, arrays)
    env = dict(zip(g.inputs, arrays))
    for name, v in g.params.items():
        val = (params or {}).get(name, g.param_values.get(name))
        if val is None:
            raise ValueError(f"param %{name} has no value (pass params={{'{name}': array}})")
        env[v] = np.asarray(val)
    for n in g.nodes:
        extra = {"regions": n.regions} if n.regions else {}
        res = n.op.reference(*(env[v] for v in n.inputs), **concrete_attrs(n, bindings), **extra)
        res = res if isinstance(res, tuple) else (res,)
        for o, r in zip(n.outputs, res):
            r = np.asarray(r)
            _check(n, o.type, r, bindings)
            env[o] = r
    outs = tuple(env[v] for v in g.outputs)
    result = outs[0] if len(outs) == 1 else outs
    if return_updates:
        return result, {p.name: env[v] for p, v in g.updates}
    return result


def _check(n, t: TensorType, r: np.ndarray, bindings):
    want = t.concrete(bindings)
    if r.shape != want or r.dtype != t.dtype.np:
        raise AssertionError(f"reference of {n.op.name} gave {r.dtype}{list(r.shape)}, "
                             f"its type says {t} = {t.dtype.np}{list(want)}")
