"""Cutting the training graph at the gradients: ONE graph in, two graphs out.

The compiled training step (kiln/runtime/training.py) is one graph: forward, loss,
backward, clipping, optimizer update, metric accumulators, all as state updates. For
data-parallel training it is cut in two, along the values every rank must agree on:

- the **grads graph** (run on each rank's shard) computes the *cut values* and packs
  them into ONE contiguous ``f32[K]`` output, in three sections:

  1. the gradient of every trained weight (scaled by the host by ``n_rank / B``),
  2. the new value of every other model variable the step assigns (BatchNormalization
     moving statistics; scaled the same way, so the sum is their batch-size weighted
     average),
  3. each metric accumulator's *increment*: the graph computes the accumulator's new
     value with the accumulator read as zeros, which for kiln's metrics (sums:
     totals, counts, confusion counts) is exactly this shard's contribution. Summed
     over ranks it is the global increment, so the loss and metrics are global values.

  The weights and the assigned variables are *inputs* of this graph (their buffers
  belong to the apply graph), so no pass may fold them; the rest of its state (the
  RNG counter) stays local, as do weights no step updates (frozen: folded as usual).
- the **apply graph** (identical on every rank) takes the reduced buffer and the
  learning rate, unpacks it (slice + reshape) in place of the cut values, and holds
  everything downstream of them: loss scaling, clipping, the optimizer update,
  ``iterations``, the assigned variables, ``accumulator + increment`` and the metric
  results, which are its outputs.

Nothing is rebuilt or written twice: both graphs are copies of nodes of the original
graph, split by reachability (the grads graph: what the cut values need; the apply
graph: what its roots need, stopping at the cut). A node of the apply side that would
need a fed input other than the learning rate cannot be cut and raises ``SplitError``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.types import DType, TensorType

PACKED = "reduced"         # the apply graph's input: the buffer after the Allreduce
LEARNING_RATE = "learning_rate"


class SplitError(ValueError):
    """The training graph cannot be cut at its gradients."""


@dataclass
class Split:
    grads_graph: Graph        # inputs: the step's inputs but the learning rate, then ``fed``
    apply_graph: Graph        # inputs: (PACKED f32[K], learning_rate)
    fed: list                 # param names fed to the grads graph from the apply side's buffers
    sections: list            # (kind, name, offset, size, shape) per cut value, packing order
    size: int                 # K: elements of the packed buffer
    scaled: int               # elements of the prefix scaled by n_rank / B (sections 1 and 2)


def split_at_gradients(g: Graph, grads: dict, optimizer_state: set, accumulators: set,
                       variables: set) -> Split:
    """Cut ``g`` (a train-step graph) at its gradients.

    ``grads``: param name -> gradient value in ``g`` (the trained weights);
    ``optimizer_state``: names of the params the optimizer adds (slots, iterations,
    globals); ``accumulators``: names of the metric accumulators (summed over ranks);
    ``variables``: names of the model's variables (those the step assigns other than
    by gradient are averaged). Other updated params (the RNG counter) stay local to
    the grads graph."""
    updates = {p.name: v for p, v in g.updates}
    apply_side = set(grads) | set(optimizer_state)
    averaged = [n for n in updates if n in variables and n not in apply_side]
    summed = [n for n in updates if n in accumulators]
    local = [n for n in updates if n not in apply_side and n not in averaged and n not in summed]

    cut = [("grad", n, grads[n]) for n in grads] + \
          [("average", n, updates[n]) for n in averaged] + \
          [("sum", n, updates[n]) for n in summed]
    sections, off = [], 0
    for kind, name, v in cut:
        if v.type.dtype is not DType.f32 or not v.type.is_static:
            raise SplitError(f"the {kind} value of %{name} is {v.type}: data-parallel training "
                             f"reduces static f32 values only")
        size = int(np.prod(v.type.shape, dtype=np.int64))
        sections.append((kind, name, off, size, tuple(v.type.shape)))
        off += size
    scaled = sum(s[3] for s in sections if s[0] != "sum")

    feedable = {n for n in g.params if n in apply_side or n in averaged}
    g1 = _grads_graph(g, cut, [updates[n] for n in local], feedable, set(summed), local)
    fed = [v.name for v in g1.inputs if v.name in feedable]
    g2 = _apply_graph(g, sections, {v: s for v, s in zip((c[2] for c in cut), sections)},
                      [n for n in updates if n in apply_side or n in averaged or n in summed],
                      off)
    return Split(g1, g2, fed, sections, off, scaled)


def _needed(g: Graph, roots, stop=frozenset()) -> set:
    """The nodes of ``g`` that ``roots`` depend on, not looking past values in ``stop``."""
    want = {v for v in roots if v not in stop}
    keep = set()
    for n in reversed(g.nodes):
        if any(o in want for o in n.outputs):
            keep.add(n)
            want.update(v for v in n.inputs if v not in stop)
    return keep


def _copy(new: Graph, n: Node, env: dict):
    nn = Node(n.op, tuple(env[v] for v in n.inputs), n.attrs, [o.type for o in n.outputs],
              n.regions)
    new.nodes.append(nn)
    env.update(zip(n.outputs, nn.outputs))


def _grads_graph(g, cut, local_new, fed: set, zeroed: set, local) -> Graph:
    roots = [v for _, _, v in cut] + local_new
    keep = _needed(g, roots)
    used = {v for n in keep for v in n.inputs} | set(roots)
    new = Graph(g.name.removesuffix("_train") + "_grads")
    env: dict = {}
    for v in g.inputs:
        if v.name == LEARNING_RATE:
            if v in used:
                raise SplitError("the gradients depend on the learning rate: the graph cannot "
                                 "be cut at them")
            continue
        env[v] = new.add_input(v.name, v.type)
    with new.building():
        for name, p in g.params.items():
            if p not in used:
                continue
            if name in fed:
                env[p] = new.add_input(name, p.type)
            elif name in zeroed:                     # an accumulator: its increment from 0
                env[p] = new.constant(np.zeros(p.type.shape, p.type.dtype.np), p.type.dtype)
            else:
                env[p] = new.add_param(name, g.param_values.get(name), type=p.type)
        for n in g.nodes:
            if n in keep:
                _copy(new, n, env)
        flat = [new.op("reshape", env[v], shape=(int(np.prod(v.type.shape, dtype=np.int64)),))
                if v.type.shape != (int(np.prod(v.type.shape, dtype=np.int64)),) else env[v]
                for _, _, v in cut]
        packed = flat[0] if len(flat) == 1 else new.op("concat", *flat, axis=0)
    new.set_outputs([packed])
    for name, v in zip(local, local_new):
        new.add_update(new.params[name], env[v])
    return new


def _apply_graph(g, sections, cut_of: dict, updated: list, size: int) -> Graph:
    updates = {p.name: v for p, v in g.updates}
    roots = list(g.outputs) + [updates[n] for n in updated]
    keep = _needed(g, roots, stop=set(cut_of))
    used = {v for n in keep for v in n.inputs} | set(roots)
    new = Graph(g.name.removesuffix("_train") + "_apply")
    packed = new.add_input(PACKED, TensorType((size,), DType.f32))
    env: dict = {}
    for v in g.inputs:
        if v.name == LEARNING_RATE:
            env[v] = new.add_input(v.name, v.type)
        elif v in used:
            raise SplitError(f"the optimizer update or a metric result reads the input "
                             f"{v.name!r} directly: the graph cannot be cut at the gradients")
    for name, p in g.params.items():
        if p in used or name in updated:
            env[p] = new.add_param(name, g.param_values.get(name), type=p.type)
    with new.building():
        for v, (kind, name, off, n, shape) in cut_of.items():
            part = new.op("slice", packed, axes=(0,), begin=(off,), end=(off + n,))
            if shape != (n,):
                part = new.op("reshape", part, shape=shape)
            env[v] = new.op("add", env[g.params[name]], part) if kind == "sum" else part
        for n in g.nodes:
            if n in keep:
                _copy(new, n, env)
    new.set_outputs([env[v] for v in g.outputs])
    for name in updated:
        new.add_update(new.params[name], env[updates[name]])
    return new
