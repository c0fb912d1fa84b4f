"""Simplification: common-subexpression elimination and algebraic rewrite rules.

Algorithm. One forward sweep rebuilds the graph. Each node, with its operands already
rewritten, is first offered to the rules registered for its op (``RULES``, a table:
op name -> functions); the first rule that returns values replaces the node (the
values it returns may be new nodes appended by the rule). Otherwise the node is
hash-consed: a node with the same op, operands and attributes as an earlier one is
replaced by that one (CSE). The sweep repeats until nothing changes.

*Known* values are those computable at compile time: parameters with held values,
constants, and nodes whose operands are all known (``constfold`` computes them).
Rules use that to move work onto weights, e.g. BatchNormalization's scale after a
Dense or Conv: ``mul(matmul(x, W), s)`` -> ``matmul(x, mul(W, s))`` when ``s`` is known
and varies only along the output channels.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.opdef import OpTypeError
from .manager import register_pass

RULES: dict = {}
#: transpose(gather(table, idx)) -> gather(table, transpose(idx)) (False: for A/B runs)
MOVE_GATHER_INDICES = True


def rule(*ops):
    def deco(fn):
        for op in ops:
            RULES.setdefault(op, []).append(fn)
        return fn
    return deco


class Ctx:
    """What rules see: the graph being built, and compile-time knowledge of values."""

    def __init__(self, g: Graph):
        self.g = g
        self.producer: dict = {}
        self.known: set = set()
        self.old_graph: Graph | None = None     # the graph being rewritten
        self.old_users: dict | None = None
        self.old_outputs: set = set()

    def add(self, n: Node):
        for o in n.outputs:
            self.producer[o] = n
        if n.inputs and all(v in self.known for v in n.inputs) or n.op.family == "constant":
            self.known.update(n.outputs)

    def single_use(self, old: Value) -> bool:
        """Whether value ``old`` of the graph being rewritten has one reader (a node,
        not a graph output): a rule replacing that reader may drop it."""
        if self.old_users is None:       # only rules that ask pay for the map
            g = self.old_graph
            self.old_users = g.users()
            self.old_outputs = set(g.outputs) | {v for _, v in g.updates}
        return len(self.old_users.get(old, ())) == 1 and old not in self.old_outputs

    def op_of(self, v: Value):
        n = self.producer.get(v)
        return n.op.name if n is not None else None

    def const_value(self, v: Value):
        """The value of a ``constant`` node's result, else None."""
        n = self.producer.get(v)
        if n is not None and n.op.family == "constant":
            return n.attrs["value"]
        return None

    def emit(self, op, *inputs, **attrs) -> Value:
        v = self.g.op(op, *inputs, **attrs)
        self.add(v.producer)
        return v


def _is(c, x) -> bool:
    return c is not None and np.all(c == x)


# -- identities ------------------------------------------------------------------------

@rule("mul", "div")
def _times_one(ctx, n, a, b):
    if n.op.name == "mul" and _is(ctx.const_value(a), 1) and n.outputs[0].type == b.type:
        return b
    if _is(ctx.const_value(b), 1) and n.outputs[0].type == a.type:
        return a


@rule("add", "sub")
def _plus_zero(ctx, n, a, b):
    if n.op.name == "add" and _is(ctx.const_value(a), 0) and n.outputs[0].type == b.type:
        return b
    if _is(ctx.const_value(b), 0) and n.outputs[0].type == a.type:
        return a


@rule("neg")
def _double_neg(ctx, n, x):
    if ctx.op_of(x) == "neg":
        return ctx.producer[x].inputs[0]


@rule("transpose")
def _transpose(ctx, n, x):
    perm = n.attrs["perm"]
    if list(perm) == list(range(len(perm))):
        return x
    if ctx.op_of(x) == "transpose":
        inner = ctx.producer[x]
        p = tuple(inner.attrs["perm"][i] for i in perm)
        return inner.inputs[0] if p == tuple(range(len(p))) else ctx.emit("transpose", inner.inputs[0], perm=p)
    if (MOVE_GATHER_INDICES and ctx.op_of(x) == "gather" and ctx.producer[x].attrs["axis"] == 0
            and ctx.single_use(n.inputs[0])):
        # rows gathered, then moved among the index axes (an embedding made time-major
        # for a recurrence): gather by the moved indices -- a transpose of one index
        # per row instead of one of the rows
        table, idx = ctx.producer[x].inputs
        m = idx.type.rank
        if tuple(perm[m:]) == tuple(range(m, len(perm))):
            return ctx.emit("gather", table, ctx.emit("transpose", idx, perm=tuple(perm[:m])), axis=0)


@rule("reshape")
def _reshape(ctx, n, x):
    if x.type == n.outputs[0].type:
        return x
    if ctx.op_of(x) == "reshape":
        return ctx.emit("reshape", ctx.producer[x].inputs[0], shape=n.outputs[0].type.shape)


@rule("cast")
def _identity_cast(ctx, n, x):
    if x.type.dtype is n.attrs["dtype"]:
        return x


# -- moving work onto weights (BatchNormalization folding, bias merging) --------------

LINEAR_IN_LAST_AXIS = ("matmul", "conv2d")   # out[..., o] = sum(x * W[..., o])


def _channel_scale(ctx, s: Value, y: Value):
    """``s`` known and broadcasting only along y's last axis (shape [C] or [1,..,1,C])."""
    if s not in ctx.known or not s.type.shape or y.type.rank < 1:
        return False
    if any(d != 1 for d in s.type.shape[:-1]) or s.type.rank > y.type.rank:
        return False
    return s.type.shape[-1] in (1, y.type.shape[-1])


@rule("mul")
def _scale_into_weights(ctx, n, a, b):
    """mul(op(x, W), s) -> op(x, W * s) for s varying along output channels only."""
    for y, s in ((a, b), (b, a)):
        p = ctx.producer.get(y)
        if (p is not None and p.op.name in LINEAR_IN_LAST_AXIS and p.inputs[1] in ctx.known
                and _channel_scale(ctx, s, y) and n.outputs[0].type == y.type):
            w = p.inputs[1]
            s_flat = ctx.emit("reshape", s, shape=(s.type.shape[-1],))
            try:
                new_w = ctx.emit("mul", w, s_flat)
                if new_w.type != w.type:
                    return None
                return ctx.emit(p.op.name, p.inputs[0], new_w, **p.attrs.as_dict())
            except OpTypeError:
                return None


@rule("mul")
def _distribute_scale_over_bias(ctx, n, a, b):
    """mul(add(y, c), s) -> add(mul(y, s), c * s) for known c, s: lets the scale reach
    the matmul/conv producing y."""
    for t, s in ((a, b), (b, a)):
        p = ctx.producer.get(t)
        if p is None or p.op.name != "add" or s not in ctx.known:
            continue
        y, c = p.inputs
        if c not in ctx.known:
            y, c = c, y
        if c in ctx.known and y not in ctx.known and ctx.op_of(y) in LINEAR_IN_LAST_AXIS \
                and _channel_scale(ctx, s, y):
            ys = ctx.emit("mul", y, s)
            cs = ctx.emit("mul", c, s)
            out = ctx.emit("add", ys, cs)
            return out if out.type == n.outputs[0].type else None


@rule("add", "sub")
def _merge_known_terms(ctx, n, a, b):
    """add(add(y, c1), c2) -> add(y, c1 + c2) (and sub of a known term) when the merged
    term does not widen y."""
    if b not in ctx.known or ctx.op_of(a) != "add":
        return None
    y, c1 = ctx.producer[a].inputs
    if c1 not in ctx.known:
        y, c1 = c1, y
    if c1 not in ctx.known or y in ctx.known:
        return None
    try:
        c = ctx.emit("add" if n.op.name == "add" else "sub", c1, b)
        out = ctx.emit("add", y, c)
    except OpTypeError:
        return None
    return out if out.type == n.outputs[0].type else None


# -- the pass --------------------------------------------------------------------------

def _sweep(g: Graph) -> tuple:
    """One rebuild applying rules and CSE; returns (graph, whether anything changed)."""
    changed = False
    new = Graph(g.name)
    ctx = Ctx(new)
    ctx.old_graph = g
    env: dict = {}
    for v in g.inputs:
        env[v] = new.add_input(v.name, v.type)
    for k, v in g.params.items():
        env[v] = new.add_param(k, g.param_values.get(k), type=v.type)
    ctx.known = {env[v] for v in g.params.values()
                 if v.name in g.param_values and v.name not in g.updated_params}
    seen: dict = {}
    for n in g.nodes:
        ins = [env[v] for v in n.inputs]
        repl = None
        if len(n.outputs) == 1:
            for fn in RULES.get(n.op.name, ()):
                r = fn(ctx, n, *ins)
                if r is not None:
                    repl = (r,)
                    break
        if repl is None:
            key = (n.op.name, tuple(ins), n.attrs.key(), tuple(id(r) for r in n.regions))
            repl = seen.get(key)
            if repl is None:
                nn = new.make_node(n.op, ins, n.attrs, n.regions)
                new.nodes.append(nn)
                ctx.add(nn)
                seen[key] = nn.outputs
                repl = nn.outputs
            else:
                changed = True
        else:
            changed = True
        for o, no in zip(n.outputs, repl):
            env[o] = no
    new.outputs = [env[v] for v in g.outputs]
    new.updates = [(env[p], env[v]) for p, v in g.updates]
    return new, changed


@register_pass("simplify")
def simplify(g: Graph) -> Graph:
    for _ in range(10):   # each sweep may enable rules on what the last one made
        g, changed = _sweep(g)
        if not changed:
            break
    return g
