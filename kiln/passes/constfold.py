"""Constant folding.

Algorithm: one forward sweep in topological order (``Graph.rebuild``), carrying a
map from values of the new graph to their compile-time contents. A value is known
when it is the output of a ``constant`` node, or a parameter whose value the graph
holds in ``param_values`` and does not update (at inference the weights are
constants; a param the graph updates is a variable), or the result
of an earlier fold. A node is folded when

- it has at least one operand and every operand is known (``constant`` nodes
  themselves, and any other source op, are copied: they are already as folded as
  they get, and a future source op such as a random draw must not be evaluated
  once at compile time), and
- none of its output types has a symbol (a symbolic shape is only known at run
  time).

Folding runs the op's numpy reference (the interpreter's oracle, with attributes
made concrete as the interpreter does) and replaces each output by a ``constant``
node when it has at most ``MAX_CONSTANT_ELEMENTS`` elements, else by a new
parameter named ``fold``, ``fold.1``, ... whose value is held beside the graph.
Because results are known, chains fold in one sweep. Nodes producing graph
outputs fold too. Operands left without users (folded-away weights and
constants) are removed by ``dce``, which the inference pipeline runs next.

Folding parameters bakes their current values into the graph: a caller who later
passes different parameter values to the folded graph gets the old ones.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ir.interpreter import concrete_attrs
from .manager import register_pass

MAX_CONSTANT_ELEMENTS = 16


@register_pass("constfold")
def constfold(g: Graph) -> Graph:
    known: dict = {}  # Value of the new graph -> np.ndarray
    variables = g.updated_params

    def value_of(new_g: Graph, v):
        if v in known:
            return known[v]
        if v.kind == "param" and v.name in new_g.param_values and v.name not in variables:
            return new_g.param_values[v.name]
        return None

    def rewrite(new_g: Graph, n, ins):
        if n.op.name == "constant":
            nn = new_g.make_node(n.op, [], n.attrs)
            new_g.nodes.append(nn)
            known[nn.output] = n.attrs["value"]
            return nn.outputs
        if not ins or any(not o.type.is_static for o in n.outputs):
            return None
        arrays = [value_of(new_g, v) for v in ins]
        if any(a is None for a in arrays):
            return None
        extra = {"regions": n.regions} if n.regions else {}
        res = n.op.reference(*arrays, **concrete_attrs(n, {}), **extra)
        res = res if isinstance(res, tuple) else (res,)
        outs = []
        for o, r in zip(n.outputs, res, strict=True):
            r = np.asarray(r)
            if r.shape != o.type.shape or r.dtype != o.type.dtype.np:
                raise AssertionError(f"constfold: reference of {n.op.name} gave "
                                     f"{r.dtype}{list(r.shape)}, its type says {o.type}")
            if r.size <= MAX_CONSTANT_ELEMENTS:
                nv = new_g.make_node("constant", [], {"value": r})
                new_g.nodes.append(nv)
                nv = nv.output
            else:
                nv = new_g.add_param(new_g.unique_param_name("fold"), r)
            known[nv] = r
            outs.append(nv)
        return outs

    return g.rebuild(rewrite)
