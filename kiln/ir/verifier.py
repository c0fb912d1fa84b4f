"""The verifier: checks that a graph is well formed. Its errors name the node
(as it prints in the text form) and what is wrong."""
from __future__ import annotations

import numpy as np

from .graph import Graph, Value, infer_types
from .opdef import OPS, OpTypeError
from .printer import fmt_node, value_names
from .types import DType, TensorType


class VerifyError(ValueError):
    pass


def verify(g: Graph) -> Graph:
    """Raise VerifyError on the first problem found; return the graph otherwise."""
    names = value_names(g)
    defined: set = set()
    where = f"graph @{g.name}"

    def name(v):
        return names.get(v) or (f"%{v.name}" if v.name else repr(v))

    for v in g.inputs:
        if not isinstance(v, Value) or v.kind != "input":
            raise VerifyError(f"{where}: input {v!r} is not an input value")
        if v in defined:
            raise VerifyError(f"{where}: input {name(v)} is listed twice")
        defined.add(v)
    for pname, v in g.params.items():
        if v.kind != "param" or v.name != pname:
            raise VerifyError(f"{where}: param %{pname} is not a parameter value named {pname}")
        if v in defined:
            raise VerifyError(f"{where}: param %{pname} is also defined elsewhere")
        defined.add(v)
        val = g.param_values.get(pname)
        if val is not None:
            vt = TensorType(np.shape(val), DType.from_numpy(np.asarray(val).dtype))
            if vt != v.type:
                raise VerifyError(f"{where}: param %{pname} is declared {v.type} but its value is {vt}")
    for pname in g.param_values:
        if pname not in g.params:
            raise VerifyError(f"{where}: a value is held for %{pname}, which is not a param")

    for n in g.nodes:
        desc = f"{where}: node `{fmt_node(n, names)}`"
        if OPS.get(n.op.name) is not n.op:
            raise VerifyError(f"{desc}: op {n.op.name} is not registered")
        for i, v in enumerate(n.inputs):
            if not isinstance(v, Value):
                raise VerifyError(f"{desc}: operand {i} is not a Value")
            if v not in defined:
                raise VerifyError(f"{desc}: operand {i} ({name(v)}) is used before it is defined "
                                  f"or is not defined in this graph")
        for r in n.regions:
            try:
                verify(r)
            except VerifyError as e:
                raise VerifyError(f"{desc}: in its region: {e}") from None
        try:
            want = infer_types(n.op, [v.type for v in n.inputs], n.attrs, n.regions)
        except OpTypeError as e:
            raise VerifyError(f"{desc}: {e}") from None
        got = tuple(o.type for o in n.outputs)
        if want != got:
            raise VerifyError(f"{desc}: output types {', '.join(map(str, got))} do not match the "
                              f"inferred {', '.join(map(str, want))}")
        for i, o in enumerate(n.outputs):
            if o in defined:
                raise VerifyError(f"{desc}: output {name(o)} is defined twice (SSA)")
            if o.producer is not n or o.index != i or o.kind != "node":
                raise VerifyError(f"{desc}: output {i} does not point back to this node")
            defined.add(o)
    updated = set()
    for p, v in g.updates:
        if g.params.get(getattr(p, "name", None)) is not p:
            raise VerifyError(f"{where}: update of {name(p)}: not a param of this graph")
        if p in updated:
            raise VerifyError(f"{where}: param {name(p)} is updated twice")
        updated.add(p)
        if v not in defined:
            raise VerifyError(f"{where}: update {name(p)} <- {name(v)}: the value is not defined "
                              f"in this graph")
        if v.type != p.type:
            raise VerifyError(f"{where}: update {name(p)} <- {name(v)}: type {v.type} does not "
                              f"match the param's {p.type}")
    if not g.outputs and not g.updates:
        raise VerifyError(f"{where}: graph has no outputs")
    for i, v in enumerate(g.outputs):
        if v not in defined:
            raise VerifyError(f"{where}: output {i} ({name(v)}) is not defined in this graph")
    syms = set(g.symbols)
    for v in list(g.params.values()) + [o for n in g.nodes for o in n.outputs]:
        extra = set(v.type.symbols) - syms
        if extra:
            raise VerifyError(f"{where}: {name(v)} has type {v.type} with symbol(s) "
                              f"{', '.join(sorted(extra))} that no input binds")
    return g
