"""Dead-code elimination.

Algorithm: one backward liveness sweep. The graph outputs and the new values of
state updates are live (and so are the params updated). Walking the
nodes in reverse topological order, a node is live when any of its outputs is
live, and then all its operands become live; a node none of whose outputs is
live is dropped. Since nodes are in topological order, every use of a node's
outputs is seen before the node itself, so one sweep suffices. Finally,
parameters no live node (and no output) uses are dropped together with their held
values. Graph inputs are the signature and always stay.

Nodes have no side effects (state updates are the graph's, not nodes'), so "reaches
an output or an update" is the whole liveness rule.
"""
from __future__ import annotations

from ..ir import Graph
from .manager import register_pass


@register_pass("dce")
def dce(g: Graph) -> Graph:
    live = set(g.roots()) | {p for p, _ in g.updates}
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(n.inputs)
    kept.reverse()

    # A view of g with only the live nodes and params; rebuild copies it.
    view = Graph(g.name)
    view.inputs = list(g.inputs)
    view.params = {name: v for name, v in g.params.items() if v in live}
    view.param_values = {name: a for name, a in g.param_values.items() if name in view.params}
    view.nodes = kept
    view.outputs = list(g.outputs)
    view.updates = list(g.updates)
    return view.rebuild()
