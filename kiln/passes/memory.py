"""Memory planning: one static arena for every intermediate, offsets affine in N.

Algorithm.
1. *Storage.* Each value lives in one of: a graph input, a parameter, a constant
   (a global), an alias (``reshape`` shares its operand's buffer), the caller's
   output buffer (a node result returned once is written straight there), or the
   arena. A state update ``p <- v`` whose producer is an elementwise kernel and the
   last reader of ``p`` (an optimizer's update, a metric accumulator) computes ``v``
   straight into ``p``'s buffer: ``v`` is an alias of ``p``, and no copy is made.
2. *Liveness.* Nodes run in order; an arena value is live from its producer's index
   to its last reader's index (readers of its aliases count; a graph output copied at
   the end lives to the end).
3. *In place.* An elementwise kernel (an elementwise op, or a fusion group without a
   master) may write its result over an operand of the same type that dies at that
   node: each element is read before it is written, at the same index. Such pairs
   share one slot (union of lifetimes).
4. *Placement.* Sizes are polynomials in the symbols (bytes, each rounded up to 64
   per unit so every slot stays aligned for any N). Slots are placed largest first
   (by size at a reference N); a slot goes at the lowest candidate offset (0, the end
   of a placed slot whose lifetime overlaps, or the coefficient-wise maximum of all
   such ends) that overlaps no live slot for EVERY N >= 0 -- intervals are compared
   coefficient-wise, which is sufficient since all coefficients are >= 0.

The plan is attached to the graph (``graph.arena``: value -> offset) and printed as
``@arena[offset]`` on each arena value; codegen follows it (and plans itself when
no plan is attached).

*Scratch.* A kernel may need bytes of its own while it runs (``SCRATCH``: a ``scan``
runs its body, whose intermediates are planned like a graph's, and double-buffers its
carries). The memory pass plans such bodies first; a node's scratch then goes just
past every arena slot live while the node runs (the coefficient-wise maximum of
their ends), so it overlaps none. Scratch offsets follow from the plan
(``scratch_offsets``) and are not stored in it; ``arena_size`` includes them.
"""
from __future__ import annotations

from ..ir.graph import Graph, Value, ancestors
from ..ir.opdef import Kind
from ..ir.types import Affine, Poly
from .manager import register_pass

ALIGN = 64
REFERENCE_BINDING = 64   # symbol value used only to ORDER candidates (correctness never depends on it)


def slot_size(v: Value) -> Poly:
    return type_bytes(v.type)


def type_bytes(t) -> Poly:
    """Bytes of a buffer of type ``t``, each coefficient rounded up to ``ALIGN``."""
    a = Affine.product(t.shape) * t.dtype.itemsize
    return Poly({a.syms: -(-a.coeff // ALIGN) * ALIGN})


def is_elementwise_kernel(n) -> bool:
    if n.op.kind in (Kind.ELEMENTWISE, Kind.BROADCAST):
        return True
    if n.op.family == "fusion":
        return all(m.op.kind in (Kind.ELEMENTWISE, Kind.BROADCAST) or m.op.family == "constant"
                   for m in n.regions[0].nodes)
    return False


def _ref(p: Poly) -> int:
    return p.evaluate({s: REFERENCE_BINDING for k in p.terms for s in k})


def classify(g: Graph) -> dict:
    """Where each value lives: ("input", i) | ("param", j) | ("const",) |
    ("alias", source) | ("output", k) | ("arena",)."""
    storage: dict = {}
    for i, v in enumerate(g.inputs):
        storage[v] = ("input", i)
    for j, v in enumerate(g.params.values()):
        storage[v] = ("param", j)
    out_count: dict = {}
    for v in g.outputs:
        out_count[v] = out_count.get(v, 0) + 1
    for n in g.nodes:
        fam = n.op.family
        if fam == "constant":
            storage[n.outputs[0]] = ("const",)
        elif fam == "reshape":
            src = n.inputs[0]
            storage[n.outputs[0]] = storage[src] if storage[src][0] == "alias" else ("alias", src)
        else:
            for o in n.outputs:
                storage[o] = ("output", g.outputs.index(o)) if out_count.get(o) == 1 else ("arena",)
    for p, v in _in_place_updates(g, storage):
        storage[v] = ("alias", p)
    return storage


def _in_place_updates(g: Graph, storage: dict) -> list:
    """The state updates ``p <- v`` that may be computed straight into ``p``'s buffer
    (no copy at the end): ``v`` is an arena result of ``p``'s type whose producer is
    the LAST reader of ``p`` (through any alias) and reads it once, as an elementwise
    kernel does -- element i read before element i is written -- and ``p`` is not a
    graph result. One pass over the nodes for all updates."""
    params = {p for p, _ in g.updates if storage.get(p, ("",))[0] == "param"}
    if not params:
        return []
    def root(w):
        s = storage.get(w)
        return s[1] if s is not None and s[0] == "alias" else w
    last: dict = {}           # param -> (index of its last reader, that reader's reads, direct)
    for i, n in enumerate(g.nodes):
        reads: dict = {}
        for w in n.inputs:
            r = root(w)
            if r in params:
                reads[r] = reads.get(r, 0) + 1
        for r, count in reads.items():
            last[r] = (i, count, r in n.inputs)
    at = {n: i for i, n in enumerate(g.nodes)}
    results = {root(w) for w in g.outputs}
    out = []
    for p, v in g.updates:
        producer = v.producer
        if (p not in params or p in results or storage.get(v) != ("arena",) or v.type != p.type
                or producer not in at or not is_elementwise_kernel(producer)
                or any(o.type != v.type for o in producer.outputs)):
            continue
        k = at[producer]
        i, count, direct = last.get(p, (-1, 0, False))
        if i < k or (i == k and count == 1 and direct and _computed_from(producer, v, p)):
            out.append((p, v))
    return out


def _computed_from(node, v, p) -> bool:
    """Whether result ``v`` of ``node`` is computed from its operand ``p`` (always, for
    one result). A kernel with several results stores each one only after loading its
    operands, but the compiler may move a load past a store to another noalias pointer:
    a result written over ``p`` is safe only when its value needs ``p`` at that point."""
    if len(node.outputs) == 1 or node.op.family != "fusion":
        return True
    body = node.regions[0]
    src = body.inputs[node.inputs.index(p)]
    return any(src in n.inputs for n in ancestors(body.nodes, body.outputs[node.outputs.index(v)]))


def lifetimes(g: Graph, storage: dict | None = None) -> dict:
    """Arena value -> (index of its producer, index of its last reader); readers of its
    aliases count, and a graph output or update value copied at the end lives to
    len(nodes)."""
    storage = storage or classify(g)

    def root(v):
        s = storage[v]
        return s[1] if s[0] == "alias" else v

    first, last = {}, {}
    for i, n in enumerate(g.nodes):
        for o in n.outputs:
            if storage[o] == ("arena",):
                first[o] = last[o] = i
        for v in n.inputs:
            r = root(v)
            if r in first:
                last[r] = i
    for v in g.roots():
        r = root(v)
        if r in first:
            last[r] = len(g.nodes)
    return {v: (first[v], last[v]) for v in first}


def _in_place_operand(n, i, life, storage):
    """The arena buffer node ``n`` (at index ``i``) may write its result over, or None:
    an elementwise kernel, an operand buffer of the result's type that dies at ``n``
    and that no other operand of ``n`` reads."""
    if len(n.outputs) != 1 or storage[n.outputs[0]] != ("arena",) or not is_elementwise_kernel(n):
        return None
    o = n.outputs[0]
    roots = [v if storage[v][0] != "alias" else storage[v][1] for v in n.inputs]
    for r in roots:
        if r in life and life[r][1] == i and r.type == o.type and roots.count(r) == 1:
            return r
    return None


def plan_memory(g: Graph) -> dict:
    """Arena value -> byte offset (a Poly). See the module docstring."""
    storage = classify(g)
    life = lifetimes(g, storage)

    # in place: an elementwise kernel writes over a same-typed operand that dies here
    slot_of = {v: v for v in life}
    for i, n in enumerate(g.nodes):
        r = _in_place_operand(n, i, life, storage)
        if r is not None:
            slot_of[n.outputs[0]] = slot_of[r]

    members: dict = {}
    for v, s in slot_of.items():
        members.setdefault(s, []).append(v)
    span = {s: (min(life[v][0] for v in vs), max(life[v][1] for v in vs)) for s, vs in members.items()}
    size = {s: Poly.termwise_max(slot_size(v) for v in vs) for s, vs in members.items()}

    placed: dict = {}
    for s in sorted(members, key=lambda s: (-_ref(size[s]), span[s][0])):
        lo, hi = span[s]
        busy = [(placed[t], placed[t] + size[t]) for t in placed
                if not (span[t][1] < lo or hi < span[t][0])]
        cands = sorted([Poly()] + [e for _, e in busy] + [Poly.termwise_max(e for _, e in busy)],
                       key=_ref)
        for c in cands:
            if all((c + size[s]).le(b0) or e0.le(c) for b0, e0 in busy):
                placed[s] = c
                break
        else:  # unreachable: the termwise maximum of all ends is always free
            raise AssertionError("memory planner found no free offset")
    return {v: placed[slot_of[v]] for v in slot_of}


def arena_size(g: Graph) -> Poly:
    """Bytes of arena the graph needs: its slots and every node's scratch."""
    offs = g.arena if g.arena is not None else plan_memory(g)
    ends = [off + slot_size(v) for v, off in offs.items()]
    ends += [off + scratch_size(n) for n, off in scratch_offsets(g, offs).items()]
    return Poly.termwise_max(ends)


# -- scratch ---------------------------------------------------------------------------------

def step_is_contiguous(t, axis: int) -> bool:
    """Whether one step along ``axis`` of a row-major ``t`` is one contiguous block."""
    return all(d == 1 for d in t.shape[:axis])


def scan_scratch_layout(n) -> dict:
    """Byte offsets of the parts of a ``scan`` node's scratch, and its ``"size"``:
    ``"body"``: the body's arena (its plan, or one made here); ``("carry", j)``: the
    second buffer of carry j; ``("step", i)``: one step of sequence i, copied out of a
    non-contiguous step; ``("out", k)``: one step of stacked output k, copied in later."""
    from ..ir.ops.control import split_operands, step_type
    (body,) = n.regions
    a = n.attrs
    nc, axis = a["num_carries"], a["axis"]
    carries, seqs, _ = split_operands(n.inputs, nc, a["num_sequences"])
    layout, end = {"body": Poly()}, arena_size(body)
    parts = [(("carry", j), v.type) for j, v in enumerate(carries)]
    parts += [(("step", i), step_type(v.type, axis)) for i, v in enumerate(seqs)
              if not step_is_contiguous(v.type, axis)]
    parts += [(("out", k), v.type) for k, v in enumerate(body.outputs[nc:])
              if not step_is_contiguous(n.outputs[nc + k].type, axis)]
    for key, t in parts:
        layout[key] = end
        end = end + type_bytes(t)
    layout["size"] = end
    return layout


def _scan_scratch(n) -> Poly:
    from .scan_rows import split_rows, split_scratch_size
    B = split_rows(n)
    if B is None:
        return scan_scratch_layout(n)["size"]
    whole = scan_scratch_layout(n)["size"]        # one unit of all rows: threads off
    return Poly.termwise_max([whole, split_scratch_size(n, B)[0]])


#: op family -> fn(node) -> bytes (a Poly) of scratch its kernel needs while it runs
SCRATCH = {"scan": _scan_scratch}


def scratch_size(n) -> Poly:
    fn = SCRATCH.get(n.op.family)
    return fn(n) if fn is not None else Poly()


def scratch_offsets(g: Graph, offsets: dict | None = None) -> dict:
    """Node -> byte offset of its scratch (every node of a ``SCRATCH`` family, even when
    it needs 0 bytes): just past every arena slot live while it runs, so it overlaps none."""
    needy = [(i, n) for i, n in enumerate(g.nodes) if n.op.family in SCRATCH]
    if not needy:
        return {}
    offs = offsets if offsets is not None else (g.arena if g.arena is not None else plan_memory(g))
    life = lifetimes(g)
    out = {}
    for i, n in needy:
        out[n] = Poly.termwise_max([offs[v] + slot_size(v) for v, (a, b) in life.items()
                                    if a <= i <= b and v in offs])
    return out


def check_plan(g: Graph) -> None:
    """Raise AssertionError if two arena values live at the same time overlap, or an
    arena value has no offset."""
    storage = classify(g)
    life = lifetimes(g, storage)
    offs = g.arena
    missing = [v for v in life if v not in offs]
    if missing:
        raise AssertionError(f"{len(missing)} arena value(s) have no offset")
    vs = list(life)
    for i, a in enumerate(vs):
        for b in vs[i + 1:]:
            (a0, a1), (b0, b1) = life[a], life[b]
            if a1 < b0 or b1 < a0:
                continue
            # sharing is allowed only for an in-place write: b written where a dies
            if offs[a] == offs[b] and (a1 == b0 or b1 == a0):
                continue
            if not ((offs[a] + slot_size(a)).le(offs[b]) or (offs[b] + slot_size(b)).le(offs[a])):
                raise AssertionError(f"arena slots overlap while both live: {a!r} at {offs[a]}, "
                                     f"{b!r} at {offs[b]}")


def report(g: Graph, bindings) -> dict:
    """Arena bytes of the plan, the naive sum of all intermediates, and the lower bound
    (the most bytes live at once), at the given symbol values."""
    storage = classify(g)
    life = lifetimes(g, storage)
    sizes = {v: slot_size(v).evaluate(bindings) for v in life}
    scratch = [scratch_size(n).evaluate(bindings) for n in g.nodes]
    # while node t runs, every value made at or before t and read at or after t is held
    # (its operands and its results together) -- except that an elementwise kernel
    # may write over one same-typed operand dying at t: no plan can use less
    def at(t):
        live = sum(sizes[v] for v, (a, b) in life.items() if a <= t <= b)
        cand = _in_place_operand(g.nodes[t], t, life, storage)
        return live - (sizes[cand] if cand is not None else 0) + scratch[t]

    lower = max((at(t) for t in range(len(g.nodes))), default=0)
    return {"arena_bytes": arena_size(g).evaluate(bindings),
            "naive_bytes": sum(sizes.values()) + sum(scratch),
            "lower_bound_bytes": lower}


@register_pass("memory")
def memory(g: Graph) -> Graph:
    def plan_bodies(new_g, n, ins):     # a scan's body is planned like a graph, first
        if n.op.family != "scan":
            return None
        nn = new_g.make_node(n.op, ins, n.attrs, tuple(memory(r) for r in n.regions))
        new_g.nodes.append(nn)
        return nn.outputs

    out = g.rebuild(plan_bodies) if any(n.op.family == "scan" for n in g.nodes) else g.copy()
    out.arena = plan_memory(out)
    return out
