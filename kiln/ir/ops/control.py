"""Structured control flow: ``scan``, a loop over a time axis with ONE body region.

A recurrence (an RNN layer) is one ``scan`` node, never an unrolled chain, so the
graph's size does not depend on the sequence length.

Operands, in order: ``num_carries`` initial carries, ``num_sequences`` (>= 1)
sequences, then loop-invariant values (weights). Every sequence has the same length
``T`` along ``axis`` (an int, or a symbol known only at run time).

The body (a region, isolated from above) takes, in order: the carries, ONE step of
each sequence (its type with ``axis`` removed), the invariants. It yields the new
carries (exactly the carries' types), then any number of per-step outputs.

Results: the final carries, then each per-step output stacked along ``axis``
(its type with ``T`` inserted at ``axis``). Steps run t = 0 .. T-1, or T-1 .. 0 when
``reverse``; a per-step output is stored at the index of the step that made it, so
stacked outputs line up with the sequences either way (as ``jax.lax.scan``; Keras'
``go_backwards`` with ``return_sequences`` is the stacked output flipped along time).
When T = 0 the final carries are the initial ones.

```
%1: f32[N,4], %2: f32[N,7,4] = scan(%h0, %xw, %u) {num_carries=1, num_sequences=1,
                                                   axis=1, reverse=false} {
  ^(%c0: f32[N,4], %x0: f32[N,4], %w0: f32[4,4]):       # h, xw[:, t], u
  %1.0: f32[N,4] = matmul(%c0, %w0)
  %1.1: f32[N,4] = add(%x0, %1.0)
  %1.2: f32[N,4] = tanh(%1.1)
  yield %1.2, %1.2                                     # the new h; h as a per-step output
}
```
(printed on one line: the attributes are wrapped here only).

Gradient (not declared yet: the autodiff pass handles ``scan`` itself). The vjp is a
second, reversed ``scan`` whose body is the body's vjp: its carries are the
cotangents of the carries plus accumulators for the invariants' cotangents
(summed over steps); its sequences are the cotangents of the stacked outputs and the
forward residuals the body's vjp reads, which the forward scan must then also emit
as per-step outputs (at least the carries at every step; the body recomputes the
rest, or saves them as extra stacked outputs). The per-step cotangents of the
sequences come out as its stacked outputs; the cotangents of the initial carries
are its final carries. ``reverse`` flips for the backward scan.
"""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, register
from ..types import TensorType


def split_operands(seq, num_carries: int, num_sequences: int):
    """(carries, sequences, invariants) of a scan's operands (or of anything in that order)."""
    seq = tuple(seq)
    return (seq[:num_carries], seq[num_carries:num_carries + num_sequences],
            seq[num_carries + num_sequences:])


def step_type(t: TensorType, axis: int) -> TensorType:
    """One step of a sequence: its type without ``axis``."""
    return t.with_shape(t.shape[:axis] + t.shape[axis + 1:])


def stacked_type(t: TensorType, axis: int, length) -> TensorType:
    """A per-step output stacked along ``axis``: ``length`` inserted at ``axis``."""
    return t.with_shape(t.shape[:axis] + (length,) + t.shape[axis:])


@register
class Scan(OpDef):
    name = "scan"
    kind = Kind.OPAQUE
    family = "scan"
    num_regions = 1
    attrs = (Attr("num_carries", AttrKind.INT), Attr("num_sequences", AttrKind.INT),
             Attr("axis", AttrKind.INT, 0), Attr("reverse", AttrKind.BOOL, False))

    def infer(self, *types, num_carries, num_sequences, axis, reverse, regions):
        (body,) = regions
        nc, ns = num_carries, num_sequences
        if nc < 0 or ns < 1 or nc + ns > len(types):
            raise OpTypeError(f"scan: needs num_carries >= 0 carries and num_sequences >= 1 "
                              f"sequences among its {len(types)} operand(s), got "
                              f"num_carries={nc}, num_sequences={ns}")
        carries, seqs, invs = split_operands(types, nc, ns)
        if axis < 0:
            raise OpTypeError(f"scan: axis must be >= 0, got {axis}")
        for i, s in enumerate(seqs):
            if s.rank <= axis:
                raise OpTypeError(f"scan: sequence {i} ({s}) has no axis {axis}")
        length = seqs[0].shape[axis]
        for i, s in enumerate(seqs[1:], start=1):
            if s.shape[axis] != length:
                raise OpTypeError(f"scan: sequences differ in length along axis {axis}: "
                                  f"{seqs[0]} vs {s} (sequence {i})")
        if body.params:
            raise OpTypeError("scan: the body takes values only through its inputs, "
                              f"not params ({', '.join(body.params)})")
        want = [*carries, *(step_type(s, axis) for s in seqs), *invs]
        got = [v.type for v in body.inputs]
        if len(got) != len(want):
            raise OpTypeError(f"scan: the body takes {len(got)} input(s), but the scan passes "
                              f"{len(want)} ({nc} carries, {ns} sequence steps, "
                              f"{len(invs)} invariants)")
        roles = ([f"carry {i}" for i in range(nc)]
                 + [f"a step of sequence {i} along axis {axis}" for i in range(ns)]
                 + [f"invariant {i}" for i in range(len(invs))])
        for k, (w, g, role) in enumerate(zip(want, got, roles)):
            if w != g:
                raise OpTypeError(f"scan: body input {k} is {g}, but {role} is {w}")
        outs = [v.type for v in body.outputs]
        if len(outs) < nc:
            raise OpTypeError(f"scan: the body yields {len(outs)} value(s), fewer than its "
                              f"{nc} carries")
        if not outs:
            raise OpTypeError("scan: the body yields nothing")
        for i, (c, o) in enumerate(zip(carries, outs)):
            if c != o:
                raise OpTypeError(f"scan: the body yields {o} for carry {i}, whose initial value "
                                  f"is {c}")
        stacked = []
        for i, o in enumerate(outs[nc:]):
            if o.rank < axis:
                raise OpTypeError(f"scan: per-step output {i} ({o}) cannot be stacked along "
                                  f"axis {axis}")
            stacked.append(stacked_type(o, axis, length))
        return tuple(carries) + tuple(stacked)

    def reference(self, *arrays, num_carries, num_sequences, axis, reverse, regions):
        from ..interpreter import bind_symbols, interpret
        (body,) = regions
        carries, seqs, invs = split_operands(arrays, num_carries, num_sequences)
        length = seqs[0].shape[axis]
        steps = [None] * length
        for t in (range(length - 1, -1, -1) if reverse else range(length)):
            res = interpret(body, *carries, *(np.take(s, t, axis=axis) for s in seqs), *invs)
            res = res if isinstance(res, tuple) else (res,)
            carries, steps[t] = res[:num_carries], res[num_carries:]
        outs = body.outputs[num_carries:]
        if length == 0:   # empty stacks: shapes from the body's types
            zeros = [np.empty(np.delete(s.shape, axis), s.dtype) for s in seqs]
            b = bind_symbols(body, [*carries, *zeros, *invs])
            stacked = [np.empty(stacked_type(v.type, axis, 0).concrete(b), v.type.dtype.np)
                       for v in outs]
        else:
            stacked = [np.stack([steps[t][k] for t in range(length)], axis=axis)
                       for k in range(len(outs))]
        return tuple(np.asarray(c) for c in carries) + tuple(stacked)


def build_scan(g, carries, sequences, invariants, body_fn, axis: int = 0, reverse: bool = False):
    """Append a ``scan`` to graph ``g``; returns (final carries, stacked outputs) as lists.

    ``body_fn(body, carries, steps, invariants)`` builds the body in the region graph
    ``body`` (which is also the graph being built, for ``kiln.ops``), from its input
    Values, and returns ``(new_carries, per_step_outputs)``.
    """
    from ..graph import Graph
    body = Graph("region")
    cs = [body.add_input(f"c{i}", v.type) for i, v in enumerate(carries)]
    xs = [body.add_input(f"x{i}", step_type(v.type, axis)) for i, v in enumerate(sequences)]
    ws = [body.add_input(f"w{i}", v.type) for i, v in enumerate(invariants)]
    with body.building():
        new_carries, outs = body_fn(body, cs, xs, ws)
    body.set_outputs([*new_carries, *outs])
    n = g.make_node("scan", [*carries, *sequences, *invariants],
                    {"num_carries": len(carries), "num_sequences": len(sequences), "axis": axis,
                     "reverse": reverse}, (body,))
    g.nodes.append(n)
    return list(n.outputs[:len(carries)]), list(n.outputs[len(carries):])
