"""Fusion: group ops into ``fusion`` nodes that codegen emits as one kernel each.

Algorithm. Every node starts in a group of its own, whose *kind* follows from its
op: elementwise -> ``loop``; matmul, conv, pooling -> ``epilogue`` (a master with an
empty epilogue);
reductions -> ``reduce``; anything else -> not fusible. Nodes are visited in REVERSE
topological order; for each node's group, each producer ``p`` of the node's operands
may join the group when

1. every user of every output of ``p`` is already in the group and ``p`` is not a
   graph output (so the group keeps ONE result, nothing inside it is needed
   outside, and merging can never create a cycle: the group's only way out is its
   root), and
2. a rule of ``RULES`` matches (producer's op kind, group kind, where ``p`` feeds:
   the master or the elementwise part).

Rules are data. Then loop groups whose result another loop group reads merge into it
even when the result is needed outside too, as extra results (``merge_results``).
A group of two or more nodes becomes a ``fusion`` node whose region holds the group's
nodes in their original order; its operands are the values the group reads from
outside, in first-use order; its results are the root's, then the extra ones.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph, Node
from ..ir.opdef import Kind
from .manager import register_pass

EW = frozenset({Kind.ELEMENTWISE, Kind.BROADCAST})


@dataclass(frozen=True)
class Rule:
    producer: frozenset      # op kinds of the producer (or the family "scalar_constant")
    group: str               # group kind it may join
    feeds: str               # "master": p's result is read by the group's master; "rest": by another member
    result: str              # group kind after the merge
    why: str


RULES = (
    Rule(EW, "loop", "rest", "loop", "elementwise chains become one loop"),
    Rule(EW, "epilogue", "rest", "epilogue", "elementwise epilogue applied to the master's result "
                                             "while it is in cache (GEMM: per tile)"),
    Rule(EW, "reduce", "master", "reduce", "elementwise prologue computed inside the reduction"),
    Rule(EW, "reduce", "rest", "reduce", "elementwise prologue computed inside the reduction"),
    Rule(frozenset({Kind.OUT_FUSABLE}), "loop", "rest", "epilogue",
         "a matmul/conv/pooling becomes the master of an elementwise group over its result"),
    Rule(frozenset({"slice"}), "loop", "rest", "loop",
         "a slice of a buffer is read in place, as a strided view (no copy)"),
    Rule(frozenset({"scalar_constant"}), "loop", "rest", "loop", "scalar constants become immediates"),
    Rule(frozenset({"scalar_constant"}), "epilogue", "rest", "epilogue", "scalar constants become immediates"),
    Rule(frozenset({"scalar_constant"}), "reduce", "rest", "reduce", "scalar constants become immediates"),
)


def _producer_kind(n: Node):
    if n.op.family == "constant":
        return "scalar_constant" if n.attrs["value"].size == 1 else None
    if n.op.family == "slice":
        return "slice"
    return n.op.kind


def _initial_kind(n: Node) -> str | None:
    if n.op.kind in EW:
        return "loop"
    if n.op.kind is Kind.OUT_FUSABLE and len(n.outputs) == 1:
        return "epilogue"
    if n.op.family == "reduce":
        return "reduce"
    return None


class _Group:
    __slots__ = ("kind", "nodes", "master", "root", "views", "extra")

    def __init__(self, n: Node, kind: str):
        self.kind, self.nodes, self.root = kind, {n}, n
        self.views = False   # holds slices read in place: stays a loop group
        self.master = n if kind in ("epilogue", "reduce") else None
        self.extra: list = []   # roots of merged producer loops: more results (see merge_results)


def _rule(p: Node, g: _Group, consumer: Node):
    pk = _producer_kind(p)
    if pk is None or consumer.op.family == "slice":   # a slice reads memory: its operand stays a buffer
        return None
    feeds = "master" if consumer is g.master else "rest"
    for r in RULES:
        if pk in r.producer and r.group == g.kind and r.feeds == feeds:
            if g.views and r.result != "loop":
                return None
            if r.result == "epilogue" and g.kind == "loop":
                # the matmul's result must span the whole group result (the epilogue runs on C)
                if p.outputs[0].type != g.root.outputs[0].type:
                    return None
            return r
    return None


def plan_groups(g: Graph) -> dict:
    """Node -> _Group for every node (singletons included)."""
    users = g.users()
    outputs = set(g.roots())
    producer = {o: n for n in g.nodes for o in n.outputs}
    group: dict = {}
    for n in reversed(g.nodes):
        if n not in group:
            kind = _initial_kind(n)
            group[n] = _Group(n, kind) if kind else None
        grp = group[n]
        if grp is None or len(n.outputs) != 1:
            continue
        for v in n.inputs:
            p = producer.get(v)
            if p is None or p in group or len(p.outputs) != 1:
                continue
            if any(o in outputs for o in p.outputs):
                continue
            if not all(u in grp.nodes for o in p.outputs for u in users.get(o, ())):
                continue
            rule = _rule(p, grp, n)
            if rule is None:
                continue
            grp.nodes.add(p)
            grp.views = grp.views or p.op.family == "slice"
            if rule.result == "epilogue" and grp.kind == "loop":
                grp.master = p
            grp.kind = rule.result
            group[p] = grp
    merge_results(g, group, users, producer)
    return group


def merge_results(g: Graph, group: dict, users: dict, producer: dict):
    """Second phase: a loop group P whose result a loop group C reads joins C even when
    the result is ALSO needed outside C (a graph result, a state update, a later node):
    C then has several results, computed in one pass over their common index space.
    An optimizer's update (the new slots m and v, read by the new weight) reads each
    array once instead of twice; an LSTM cell's new c is stored while h is computed.

    Conditions: both are loop groups, P's result has the shape of C's root, every node
    outside C reading P's results comes after C's root -- so the merged node, placed at
    C's root, precedes all its readers (and no path leaves C and comes back: no cycle) --
    and no slice in C reads it. One merge at a time, from the last group, until none
    is left."""
    order = {n: i for i, n in enumerate(g.nodes)}

    def mergeable(grp, pg, v) -> bool:
        c_root = grp.root
        if (pg is None or pg is grp or pg.kind != "loop" or v.producer is not pg.root
                or len(pg.root.outputs) != 1 or v.type.shape != c_root.outputs[0].type.shape or not _reads_outside(pg)):
            return False
        if any(u not in grp.nodes and u not in pg.nodes and order[u] <= order[c_root]
               for r in (pg.root, *pg.extra) for u in users.get(r.outputs[0], ())):
            return False
        # a slice reads its operand in place: that operand stays a buffer
        return not any(u.op.family == "slice" for u in users.get(v, ()) if u in grp.nodes)

    def merge_one(grp) -> bool:
        for m in sorted(grp.nodes, key=order.get, reverse=True):
            for v in m.inputs:
                pg = group.get(producer.get(v))
                if mergeable(grp, pg, v):
                    for n in pg.nodes:
                        group[n] = grp
                    grp.nodes |= pg.nodes
                    grp.extra += [pg.root, *pg.extra]
                    grp.views = grp.views or pg.views
                    return True
        return False

    while any(merge_one(group[n]) for n in reversed(g.nodes)
              if group.get(n) is not None and group[n].root is n and group[n].kind == "loop"):
        pass


@register_pass("fusion")
def fusion(g: Graph) -> Graph:
    groups = plan_groups(g)
    order = {n: i for i, n in enumerate(g.nodes)}
    new_g = Graph(g.name)
    env: dict = {}
    for v in g.inputs:
        env[v] = new_g.add_input(v.name, v.type)
    for pname, v in g.params.items():
        env[v] = new_g.add_param(pname, g.param_values.get(pname), type=v.type)
    for n in g.nodes:
        grp = groups.get(n)
        if grp is not None and len(grp.nodes) >= 2 and _reads_outside(grp):
            if n is grp.root:  # members come before their root; users of extra results after it
                members = sorted(grp.nodes, key=order.get)
                roots = [n, *grp.extra]
                for r, v in zip(roots, _fusion_node(new_g, members, roots, env)):
                    env[r.outputs[0]] = v
            continue
        # a region that runs as a graph of its own (a scan's body) is fused the same way
        regions = n.regions if n.op.family == "fusion" else tuple(fusion(r) for r in n.regions)
        nn = new_g.make_node(n.op, [env[v] for v in n.inputs], n.attrs, regions)
        new_g.nodes.append(nn)
        for o, no in zip(n.outputs, nn.outputs):
            env[o] = no
    new_g.outputs = [env[v] for v in g.outputs]
    new_g.updates = [(env[p], env[v]) for p, v in g.updates]
    return new_g


def _reads_outside(grp: _Group) -> bool:
    """Whether a group reads a value made outside it, and those values bind every
    symbol of the group's types. One that does not (a constant broadcast to
    ``[N, ...]``, alone or feeding a reduction) stays unfused: its region, isolated
    from above, would have no input to bind the symbols of its shapes."""
    inside = {o for m in grp.nodes for o in m.outputs}
    outside = [v for m in grp.nodes for v in m.inputs if v not in inside]
    if not outside:
        return False
    bound = {s for v in outside for s in v.type.symbols}
    used = {s for m in grp.nodes for o in m.outputs for s in o.type.symbols}
    return used <= bound


def _fusion_node(new_g: Graph, members: list, roots: list, env: dict):
    """Append ``fusion`` over ``members`` (in order) to ``new_g``; returns its results
    (those of ``roots``, in that order)."""
    inside = {o for m in members for o in m.outputs}
    body = Graph("region")
    benv: dict = {}
    operands = []
    for m in members:
        for v in m.inputs:
            if v not in inside and v not in benv:
                benv[v] = body.add_input(f"p{len(operands)}", v.type)
                operands.append(env[v])
        bn = body.make_node(m.op, [benv[v] for v in m.inputs], m.attrs, m.regions)
        body.nodes.append(bn)
        for o, bo in zip(m.outputs, bn.outputs):
            benv[o] = bo
    body.set_outputs([benv[r.outputs[0]] for r in roots])
    node = new_g.make_node("fusion", operands, {}, (body,))
    new_g.nodes.append(node)
    return node.outputs
