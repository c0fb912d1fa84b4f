"""Reverse-mode automatic differentiation as an IR-to-IR transform.

``gradients(g, loss, wrt)`` appends the backward pass to ``g`` and returns the
gradient values; they are ordinary IR (they print, parse, verify, run in the
interpreter and go through every later pass and backend).

Algorithm.
1. *Activity.* A value is active when it depends differentiably on a ``wrt`` value:
   the ``wrt`` values themselves, and the floating-point outputs of a node with an
   active operand -- unless the op is declared non-differentiable
   (``differentiable = False``: comparisons, logic, floor, sign, argmax; they are
   piecewise constant, so the gradient through them is zero wherever it exists).
2. *Sweep.* The nodes that existed when ``gradients`` was called are visited in
   reverse order, with a map value -> list of cotangent contributions, seeded with
   ``loss -> [seed]`` (1 for a scalar loss). A node with an active operand and a
   cotangent on an output gets its outputs' cotangents summed (``add``), then its
   op's ``vjp`` (declared next to the op, see kiln/ir/opdef.py) appends the
   operands' cotangents to ``g``; those of active operands are recorded, and any
   node the rule made only for inactive operands is dropped at once. Cotangents of
   a value used several times are summed when its producer is reached (all users
   come after it).
3. ``scan`` is handled here (kiln/passes/autodiff_scan.py): backprop through time
   as a reversed scan whose body is the body's vjp.

An op on the path without a rule raises ``GradientError`` naming it (``fusion`` and
the layout ops run after autodiff). A ``wrt`` value the loss does not depend on
(or only through non-differentiable ops) gets None, or zeros with
``unconnected="zero"`` (as TensorFlow's ``unconnected_gradients``).

Decisions at non-differentiable points (documented next to each rule): relu'(0) = 0,
abs'(0) = sign(0) = 0; maximum/minimum and reduce_max/min split the cotangent equally
among tied operands/elements; max_pool2d gives it to the first maximum of each
window (as TensorFlow); pow: 0 for d/db where a = 0 and for d/da where b = 0.
"""
from __future__ import annotations

from typing import Sequence

from ..ir.graph import Graph, Value
from ..ir.ops.vjp_util import scalar, sum_all, zeros

#: Ops that deliberately have no gradient rule, and why (the error says so).
NO_VJP = {
    "fusion": "fused groups are formed after autodiff: differentiate before the fusion pass",
    "pack_panels": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "matmul_packed": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "conv2d_packed": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "conv2d_winograd": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "attention_packed": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "attention": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "lstm_cell_packed": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "lstm_project": "layout ops are inserted after autodiff: differentiate before the layout pass",
    "max_pool2d_grad": "second-order gradients through max pooling are not implemented",
}


class GradientError(ValueError):
    """The gradient asked for cannot be built (bad arguments, or an op on the path
    without a gradient rule)."""


def gradients(g: Graph, loss: Value, wrt: Sequence[Value], seed: Value | None = None,
              unconnected: str = "none") -> list:
    """Append d loss / d w for each w in ``wrt`` to ``g``; return the gradient values.

    ``loss``: a value of ``g``; a scalar (f32[] or f64[]) unless ``seed`` (a value of
    ``g`` with loss's type: the cotangent of ``loss``) is given. ``wrt``: inputs,
    params or node results of ``g``, floating point. ``unconnected``: what a ``wrt``
    value the loss does not depend on gets: ``"none"`` (None) or ``"zero"`` (zeros).
    """
    if unconnected not in ("none", "zero"):
        raise GradientError(f"unconnected must be 'none' or 'zero', got {unconnected!r}")
    defined = _defined(g)
    _check_value(loss, defined, g, "loss")
    wrt = list(wrt)
    for k, w in enumerate(wrt):
        _check_value(w, defined, g, f"wrt[{k}]")
    if seed is None:
        if loss.type.rank != 0:
            raise GradientError(f"the loss must be a scalar (f32[] or f64[]), got {loss.type}; "
                                f"reduce it first or pass seed= (its cotangent)")
        seed = scalar(g, 1.0, loss)
    else:
        _check_value(seed, defined, g, "seed")
        if seed.type != loss.type:
            raise GradientError(f"seed {seed.type} must have the loss's type {loss.type}")
    grads = backprop(g, [(loss, seed)], wrt)
    if unconnected == "zero":
        grads = [zeros(g, w.type) if d is None else d for w, d in zip(wrt, grads)]
    return grads


def backprop(g: Graph, seeds: Sequence[tuple], wrt: Sequence[Value], nodes: list | None = None) -> list:
    """The general sweep: ``seeds`` are (value, cotangent) pairs (several may name one
    value: they add); returns the summed cotangent of each ``wrt`` value (None where
    nothing reaches it). ``nodes``: the forward nodes to differentiate through
    (default: ``g``'s nodes now); backward nodes are appended to ``g``."""
    from .autodiff_scan import scan_vjp

    nodes = list(g.nodes) if nodes is None else nodes
    active = _active(nodes, wrt)
    cots: dict = {}
    for v, ct in seeds:
        if ct is not None and v in active:
            cots.setdefault(v, []).append(ct)
    for idx in range(len(nodes) - 1, -1, -1):
        n = nodes[idx]
        if not any(o in cots for o in n.outputs) or not any(v in active for v in n.inputs):
            continue
        out_cts = [_summed(g, cots, o) for o in n.outputs]
        start = len(g.nodes)
        if n.op.name == "scan":
            in_cts = scan_vjp(g, n, out_cts, [v in active for v in n.inputs])
        elif n.op.vjp is None:
            why = NO_VJP.get(n.op.name, "its declaration has no vjp")
            raise GradientError(f"cannot differentiate through op {n.op.name} (node #{idx}, "
                                f"{', '.join(str(o.type) for o in n.outputs)}): {why}")
        else:
            in_cts = n.op.vjp(g, list(n.inputs), list(n.outputs), out_cts, **n.attrs.as_dict())
        if len(in_cts) != len(n.inputs):
            raise GradientError(f"the vjp of {n.op.name} returned {len(in_cts)} cotangents for "
                                f"{len(n.inputs)} operands")
        keep = []
        for v, ct in zip(n.inputs, in_cts):
            if ct is None or v not in active:
                continue
            if ct.type != v.type:
                raise GradientError(f"the vjp of {n.op.name} gave a cotangent of type {ct.type} for "
                                    f"an operand of type {v.type}")
            cots.setdefault(v, []).append(ct)
            keep.append(ct)
        _drop_unused(g, start, keep)
    return [_summed(g, cots, w) for w in wrt]


def _summed(g, cots, v):
    terms = cots.get(v)
    if not terms:
        return None
    if len(terms) > 1:
        cots[v] = [sum_all(g, terms)]
    return cots[v][0]


def _active(nodes, wrt) -> set:
    active = {w for w in wrt if w.type.dtype.is_float}
    for n in nodes:
        if getattr(n.op, "differentiable", True) and any(v in active for v in n.inputs):
            active.update(o for o in n.outputs if o.type.dtype.is_float)
    return active


def _drop_unused(g: Graph, start: int, keep: list):
    """Remove the nodes appended since ``start`` that no kept value needs."""
    fresh = g.nodes[start:]
    if not fresh:
        return
    needed = set(keep)
    live = []
    for n in reversed(fresh):
        if any(o in needed for o in n.outputs):
            live.append(n)
            needed.update(n.inputs)
    if len(live) != len(fresh):
        del g.nodes[start:]
        g.nodes.extend(reversed(live))


def _defined(g: Graph) -> set:
    vals = set(g.inputs) | set(g.params.values())
    for n in g.nodes:
        vals.update(n.outputs)
    return vals


def _check_value(v, defined, g, what):
    if not isinstance(v, Value):
        raise GradientError(f"{what} must be an IR Value, got {type(v).__name__}")
    if v not in defined:
        raise GradientError(f"{what} ({v!r}) is not a value of graph @{g.name}")
    if not v.type.dtype.is_float:
        raise GradientError(f"{what} must be floating point, got {v.type} (gradients are taken "
                            f"of and with respect to f32/f64 values)")
