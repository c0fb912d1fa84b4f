"""Finding an LSTM step in a recurrence body, for the layout pass.

An LSTM layer's inference body (kiln/frontend/layers/recurrent.py) computes

    z = [x_t, h] @ W + b                         matmul, add
    i, f, o = ra(z[:, :u]), ra(z[:, u:2u]), ra(z[:, 3u:])     slices, unary ops
    g = act(z[:, 2u:3u])
    c' = f * c + i * g;  h' = o * act(c')        mul, mul, add; unary op, mul

``match_cells`` finds that subgraph in any body (whoever built it: operand order of
the commutative ops is free), where W and b are body inputs that nothing else reads
and no intermediate value is read outside it; the layout pass replaces it with one
``lstm_cell_packed`` (kiln/ir/ops/lstm.py) -- when W and b are known, so that their
columns can be interleaved at compile time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value
from ..ir.ops.data import slice_ranges
from ..ir.ops.lstm import GATES, unary_activation
from ..ir.types import DType


@dataclass
class Cell:
    xh: Value                 # the GEMM's left operand [N, K]
    w: Value                  # body input: the kernel [K, 4u]
    bias: Value               # body input: the bias [4u]
    c: Value                  # the previous cell state [N, u]
    c_node: Node              # the add making c'
    h_node: Node              # the mul making h'
    activation: str
    recurrent_activation: str
    nodes: set = field(default_factory=set)   # every node the op replaces


def match_cells(body: Graph, users: dict | None = None) -> list[Cell]:
    """The LSTM steps of ``body`` (``users``: ``body.users()``, if at hand)."""
    users = body.users() if users is None else users
    outs = set(body.outputs)
    inputs = set(body.inputs)
    cells = []
    for m in body.nodes:
        if m.op.name == "matmul":
            cell = _match(m, users, outs, inputs)
            if cell is not None:
                cells.append(cell)
    return cells


def _only_user(users, outs, v):
    """The one node reading ``v`` when that is all that reads it (not a body output)."""
    us = users.get(v, [])
    return us[0] if len(us) == 1 and v not in outs else None


def _other(node, v):
    """The operand of binary ``node`` that is not ``v`` (None if ``v`` is not one)."""
    a, b = node.inputs
    return b if a is v else a if b is v else None


def _match(m, users, outs, inputs):
    xh, w = m.inputs
    if (xh.type.rank != 2 or w.type.rank != 2 or w not in inputs or xh.dtype is not DType.f32
            or users.get(w) != [m] or w in outs):
        return None
    n = w.type.shape[1]
    if not isinstance(n, int) or n % GATES:
        return None
    u = n // GATES
    add = _only_user(users, outs, m.outputs[0])
    if add is None or add.op.name != "add":
        return None
    bias = _other(add, m.outputs[0])
    if bias not in inputs or bias.type.shape != (n,) or users.get(bias) != [add] or bias in outs:
        return None
    z = add.outputs[0]
    if z in outs or z.type != m.outputs[0].type:
        return None
    gates = {}
    for s in users.get(z, []):
        if s.op.name != "slice":
            return None
        r = slice_ranges(z.type, s.attrs["axes"], s.attrs["begin"], s.attrs["end"], s.attrs["steps"])
        if set(r) != {1} or r[1].step != 1 or len(r[1]) != u or r[1].start % u:
            return None
        act = _only_user(users, outs, s.outputs[0])
        if act is None or not unary_activation(act.op.name) or r[1].start // u in gates:
            return None
        gates[r[1].start // u] = (s, act)
    if len(gates) != GATES:
        return None
    ra, act_name = gates[0][1].op.name, gates[2][1].op.name
    if gates[1][1].op.name != ra or gates[3][1].op.name != ra:
        return None
    i, f, g, o = (gates[k][1].outputs[0] for k in range(GATES))
    fc, ig = _only_user(users, outs, f), _only_user(users, outs, i)
    if fc is None or ig is None or fc.op.name != "mul" or ig.op.name != "mul" or fc is ig:
        return None
    c = _other(fc, f)
    if _other(ig, i) is not g or _only_user(users, outs, g) is not ig or c is None \
            or c.type != fc.outputs[0].type:
        return None
    c_node = _only_user(users, outs, fc.outputs[0])
    if (c_node is None or c_node.op.name != "add" or _other(c_node, fc.outputs[0]) is not ig.outputs[0]
            or _only_user(users, outs, ig.outputs[0]) is not c_node):
        return None
    c_new = c_node.outputs[0]
    acts = [n for n in users.get(c_new, []) if n.op.name == act_name]
    h_node = _only_user(users, outs, acts[0].outputs[0]) if len(acts) == 1 else None
    if (h_node is None or h_node.op.name != "mul" or _other(h_node, acts[0].outputs[0]) is not o
            or _only_user(users, outs, o) is not h_node or h_node.outputs[0].type != c.type):
        return None
    nodes = {m, add, fc, ig, c_node, acts[0], h_node, *(n for pair in gates.values() for n in pair)}
    return Cell(xh, w, bias, c, c_node, h_node, act_name, ra, nodes)
