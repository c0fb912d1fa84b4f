"""Backprop through time: the gradient of a ``scan`` (kiln/ir/ops/control.py).

Algorithm. A forward scan with carries c, sequences x, invariants w and body
``(c_t, x_t, w) -> (c_{t+1}, y_t)``:

1. *Residuals.* The backward body needs the carries entering every step. The
   forward scan is widened in place to also yield its entering carries as extra
   per-step outputs (stacked along the scan axis -- a carry of rank < axis with
   leading 1s; the node keeps its original result values, the extra results come
   last; a scan already widened is reused).
2. *Backward scan*, running the other way round, one step per forward step t:
   - carries: the cotangents of the float carries (initially those of the final
     carries, or zeros), and one accumulator per differentiated invariant (zeros);
   - sequences: the cotangents of the stacked outputs that have one, the stacked
     entering carries, and the forward sequences;
   - invariants: the forward invariants.
   Its body recomputes the forward step from (c_t, x_t, w), then runs the reverse
   sweep (``backprop``) seeded with the carry cotangents and the output cotangents
   of step t. It yields the cotangents of c_t (the next carries), the accumulators
   plus the invariants' step cotangents, and the cotangents of x_t (stacked).
3. The backward scan's final carries are the cotangents of the initial carries and
   of the invariants; its stacked outputs, those of the sequences.
"""
from __future__ import annotations

from ..ir.graph import Graph, Node
from ..ir.ops.control import split_operands, step_type
from ..ir.ops.vjp_util import zeros


def scan_vjp(g: Graph, n: Node, out_cts: list, needs: list) -> list:
    """Cotangents of the operands of scan node ``n`` (in ``g``) from those of its results."""
    from .autodiff import backprop

    a = n.attrs.as_dict()
    nc, ns, axis = a["num_carries"], a["num_sequences"], a["axis"]
    (body,) = n.regions
    carries, seqs, invs = split_operands(n.inputs, nc, ns)
    residuals = _widen(g, n) if nc else []
    no = len(body.outputs) - nc
    fc = [i for i in range(nc) if carries[i].type.dtype.is_float]
    fs = [s for s in range(ns) if needs[nc + s] and seqs[s].type.dtype.is_float]
    fw = [j for j in range(len(invs)) if needs[nc + ns + j] and invs[j].type.dtype.is_float]
    yk = [k for k in range(no) if out_cts[nc + k] is not None]

    bb = Graph("region")
    dcs = [bb.add_input(f"dc{i}", carries[i].type) for i in fc]
    dws = [bb.add_input(f"dw{j}", invs[j].type) for j in fw]
    dys = [bb.add_input(f"dy{k}", step_type(out_cts[nc + k].type, axis)) for k in yk]
    cs = [bb.add_input(f"c{i}", step_type(r.type, axis)) for i, r in enumerate(residuals)]
    cs = [c if c.type == v.type else bb.op("reshape", c, shape=v.type.shape) for c, v in zip(cs, carries)]
    xs = [bb.add_input(f"x{s}", step_type(v.type, axis)) for s, v in enumerate(seqs)]
    ws = [bb.add_input(f"w{j}", v.type) for j, v in enumerate(invs)]
    env = dict(zip(body.inputs, cs + xs + ws))
    for m in body.nodes:                       # recompute the forward step
        mm = bb.make_node(m.op, [env[v] for v in m.inputs], m.attrs, m.regions)
        bb.nodes.append(mm)
        env.update(zip(m.outputs, mm.outputs))
    outs = [env[v] for v in body.outputs]
    seeds = [(outs[i], dc) for i, dc in zip(fc, dcs)] + [(outs[nc + k], dy) for k, dy in zip(yk, dys)]
    wrt = [cs[i] for i in fc] + [xs[s] for s in fs] + [ws[j] for j in fw]
    r = backprop(bb, seeds, wrt, nodes=list(bb.nodes))
    r_c, r_x, r_w = r[:len(fc)], r[len(fc):len(fc) + len(fs)], r[len(fc) + len(fs):]
    new_dc = [d if d is not None else zeros(bb, cs[i].type) for i, d in zip(fc, r_c)]
    new_dw = [acc if d is None else bb.op("add", acc, d) for acc, d in zip(dws, r_w)]
    dx = [d if d is not None else zeros(bb, xs[s].type) for s, d in zip(fs, r_x)]
    bb.set_outputs(new_dc + new_dw + dx)

    init = ([out_cts[i] if out_cts[i] is not None else zeros(g, carries[i].type) for i in fc]
            + [zeros(g, invs[j].type) for j in fw])
    operands = init + [out_cts[nc + k] for k in yk] + residuals + list(seqs) + list(invs)
    back = g.make_node("scan", operands,
                       {"num_carries": len(init), "num_sequences": len(yk) + nc + ns, "axis": axis,
                        "reverse": not a["reverse"]}, (bb,))
    g.nodes.append(back)
    result: list = [None] * len(n.inputs)
    for i, v in zip(fc, back.outputs[:len(fc)]):
        result[i] = v
    for j, v in zip(fw, back.outputs[len(fc):len(init)]):
        result[nc + ns + j] = v
    for s, v in zip(fs, back.outputs[len(init):]):
        result[nc + s] = v
    return result


def _widen(g: Graph, n: Node) -> list:
    """Make scan ``n`` also yield its entering carries per step (in place: the new node
    takes over ``n``'s result values); returns those stacked carries."""
    (body,) = n.regions
    nc = n.attrs["num_carries"]
    carries_in = list(body.inputs[:nc])
    tail = list(body.outputs[-nc:]) if len(body.outputs) >= 2 * nc else []
    if [v if v.kind != "node" or v.producer.op.name != "reshape" else v.producer.inputs[0]
            for v in tail] == carries_in:
        return list(n.outputs[-nc:])                     # widened already
    wide = Graph(body.name)
    wide.inputs, wide.nodes = list(body.inputs), list(body.nodes)
    axis = n.attrs["axis"]
    extra = []
    for c in carries_in:        # a carry of rank < axis is stacked with leading 1s
        if c.type.rank < axis:
            c = wide.op("reshape", c, shape=(1,) * (axis - c.type.rank) + c.type.shape)
        extra.append(c)
    wide.set_outputs(list(body.outputs) + extra)
    n2 = g.make_node(n.op, n.inputs, n.attrs, (wide,))
    n2.outputs = tuple(n.outputs) + n2.outputs[len(n.outputs):]
    for o in n.outputs:
        o.producer = n2
    g.nodes[g.nodes.index(n)] = n2
    return list(n2.outputs[-nc:])
