"""Values, nodes and graphs: the typed, SSA graph IR.

A ``Graph`` holds inputs, named parameters (their values held beside the graph in
``param_values``), nodes in topological order, and outputs. Nodes are built through
``Graph.op``, which runs the op's type inference, so no node can exist with a wrong
type. Passes rewrite graphs with ``Graph.rebuild`` (copy with a value substitution).
"""
from __future__ import annotations

import contextvars
from typing import Callable, Iterable, Sequence

import numpy as np

from .opdef import Attrs, OpDef, OpTypeError, get_op
from .types import DType, TensorType


class Value:
    """An SSA value: a graph input, a parameter, or a node output."""

    __slots__ = ("type", "name", "producer", "index", "kind")

    def __init__(self, type: TensorType, kind: str, name: str | None = None,
                 producer: "Node | None" = None, index: int = 0):
        self.type = type
        self.kind = kind          # "input" | "param" | "node"
        self.name = name          # inputs and params: their names; node outputs: None
        self.producer = producer
        self.index = index

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    def __repr__(self):
        what = self.name if self.name is not None else f"{self.producer.op.name}#{self.index}"
        return f"<Value {what}: {self.type}>"


class Node:
    """An op applied to values. ``regions`` holds nested graphs (a ``fusion`` node's
    body); a region is isolated from above: it sees only its own inputs, which the
    node's operands bind."""
    __slots__ = ("op", "inputs", "attrs", "outputs", "regions")

    def __init__(self, op: OpDef, inputs: tuple, attrs: Attrs, out_types: Sequence[TensorType],
                 regions: tuple = ()):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.regions = tuple(regions)
        self.outputs = tuple(Value(t, "node", producer=self, index=i) for i, t in enumerate(out_types))

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op.name} has {len(self.outputs)} outputs")
        return self.outputs[0]

    def __repr__(self):
        return f"<Node {self.op.name}({len(self.inputs)} inputs)>"


def infer_types(op: OpDef, types: Sequence[TensorType], attrs: Attrs, regions: tuple = ()) -> tuple:
    op.check_arity(len(types))
    if len(regions) != op.num_regions:
        raise OpTypeError(f"{op.name}: expects {op.num_regions} region(s), got {len(regions)}")
    extra = {"regions": tuple(regions)} if op.num_regions else {}
    out = op.infer(*types, **attrs.as_dict(), **extra)
    return out if isinstance(out, tuple) else (out,)


_current: contextvars.ContextVar = contextvars.ContextVar("kiln_graph", default=None)


def ancestors(nodes, v) -> set:
    """Nodes of ``nodes`` that ``v`` depends on (``v``'s producer included)."""
    prod = {o: n for n in nodes for o in n.outputs}
    seen, todo = set(), [v]
    while todo:
        n = prod.get(todo.pop())
        if n is not None and n not in seen:
            seen.add(n)
            todo += list(n.inputs)
    return seen


def current_graph() -> "Graph":
    """The graph being built by the innermost ``with graph.building():``."""
    g = _current.get()
    if g is None:
        raise RuntimeError("no graph is being built (use kiln ops inside a layer's call, "
                           "or inside `with graph.building():`)")
    return g


class Graph:
    def __init__(self, name: str = "main"):
        if not name.replace(".", "_").isidentifier():
            raise ValueError(f"graph name must be an identifier, got {name!r}")
        self.name = name
        self.inputs: list[Value] = []
        self.params: dict[str, Value] = {}
        self.param_values: dict[str, np.ndarray] = {}
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        # state updates, done in place after the outputs are produced: (param, new value)
        self.updates: list[tuple[Value, Value]] = []
        # memory plan (kiln/passes/memory.py): arena value -> byte offset (a Poly);
        # None until planned. Any rewrite drops it (rebuild does not carry it).
        self.arena: dict | None = None

    # -- building ---------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType) -> Value:
        _check_name(name)
        if any(v.name == name for v in self.inputs) or name in self.params:
            raise ValueError(f"graph {self.name}: name {name!r} is already used")
        v = Value(type, "input", name=name)
        self.inputs.append(v)
        return v

    def add_param(self, name: str, value=None, type: TensorType | None = None) -> Value:
        """A named parameter; ``value`` (numpy) is held beside the graph."""
        _check_name(name)
        if name in self.params or any(v.name == name for v in self.inputs):
            raise ValueError(f"graph {self.name}: name {name!r} is already used")
        if value is not None:
            value = np.asarray(value)
            t = TensorType(value.shape, DType.from_numpy(value.dtype))
            if type is not None and type != t:
                raise ValueError(f"param {name}: value has type {t}, declared {type}")
            type = t
        if type is None:
            raise ValueError(f"param {name}: give a value or a type")
        v = Value(type, "param", name=name)
        self.params[name] = v
        if value is not None:
            self.param_values[name] = value
        return v

    def unique_param_name(self, base: str) -> str:
        i, name = 0, base
        while name in self.params or any(v.name == name for v in self.inputs):
            i += 1
            name = f"{base}.{i}"
        return name

    def make_node(self, op: str | OpDef, inputs: Sequence[Value], attrs: dict | Attrs | None = None,
                  regions: tuple = ()) -> Node:
        """Create (not append) a node, inferring its output types."""
        opdef = get_op(op) if isinstance(op, str) else op
        for i, v in enumerate(inputs):
            if not isinstance(v, Value):
                raise OpTypeError(f"{opdef.name}: operand {i} must be an IR Value, got {type(v).__name__}")
        a = attrs if isinstance(attrs, Attrs) else opdef.make_attrs(dict(attrs or {}))
        return Node(opdef, tuple(inputs), a, infer_types(opdef, [v.type for v in inputs], a, regions),
                    regions)

    def op(self, op: str, *inputs: Value, **attrs):
        """Append a node; return its output (or a tuple for several outputs)."""
        n = self.make_node(op, inputs, attrs)
        self.nodes.append(n)
        return n.outputs[0] if len(n.outputs) == 1 else n.outputs

    def constant(self, value, dtype: DType | str = DType.f32) -> Value:
        dt = dtype if isinstance(dtype, DType) else DType.parse(dtype)
        return self.op("constant", value=np.asarray(value, dtype=dt.np))

    def set_outputs(self, outputs: Iterable[Value]):
        self.outputs = list(outputs)

    def add_update(self, param: "Value | str", value: Value):
        """``param <- value`` at the end of every run (training: weights, optimizer
        slots, moving statistics)."""
        p = self.params.get(param) if isinstance(param, str) else param
        if p is None or p.kind != "param" or self.params.get(p.name) is not p:
            raise ValueError(f"graph {self.name}: an update needs a param of this graph, got {param!r}")
        if p.type != value.type:
            raise ValueError(f"update of %{p.name}: value has type {value.type}, the param is {p.type}")
        if any(q is p for q, _ in self.updates):
            raise ValueError(f"param %{p.name} is updated twice")
        self.updates.append((p, value))

    @property
    def updated_params(self) -> set:
        """Names of the params this graph updates (variables, not constants)."""
        return {p.name for p, _ in self.updates}

    def roots(self) -> list:
        """Values that must be computed: the outputs and the updates' new values."""
        return list(self.outputs) + [v for _, v in self.updates]

    def building(self):
        """Context manager making this the graph kiln ops append to."""
        return _Building(self)

    # -- queries ----------------------------------------------------------------------
    def users(self) -> dict:
        """Map Value -> list of nodes using it."""
        u: dict = {}
        for n in self.nodes:
            for v in n.inputs:
                u.setdefault(v, []).append(n)
        return u

    @property
    def symbols(self) -> tuple:
        seen = []
        for v in self.inputs:
            for s in v.type.symbols:
                if s not in seen:
                    seen.append(s)
        return tuple(seen)

    # -- rewriting --------------------------------------------------------------------
    def rebuild(self, rewrite: Callable[["Graph", Node, list], "Sequence[Value] | None"] | None = None,
                name: str | None = None, mapping: dict | None = None) -> "Graph":
        """Copy this graph node by node.

        For each node, ``rewrite(new_graph, node, new_inputs)`` may return replacement
        values for the node's outputs (appending whatever nodes it needs to
        ``new_graph``), or None to copy the node unchanged. Parameters and inputs are
        carried over (values shared, not copied). ``mapping``: a dict filled, as the
        copy goes, with old value -> new value (a rewrite may look up values other than
        its node's inputs there).
        """
        g = Graph(name or self.name)
        env: dict = {} if mapping is None else mapping
        for v in self.inputs:
            env[v] = g.add_input(v.name, v.type)
        for pname, v in self.params.items():
            env[v] = g.add_param(pname, self.param_values.get(pname), type=v.type)
        for n in self.nodes:
            ins = [env[v] for v in n.inputs]
            repl = rewrite(g, n, ins) if rewrite else None
            if repl is None:
                nn = Node(n.op, tuple(ins), n.attrs, [o.type for o in n.outputs], n.regions)
                g.nodes.append(nn)
                repl = nn.outputs
            if len(repl) != len(n.outputs):
                raise ValueError(f"rewrite of {n.op.name} returned {len(repl)} values for "
                                 f"{len(n.outputs)} outputs")
            for old, new in zip(n.outputs, repl):
                if new.type != old.type:
                    raise OpTypeError(f"rewrite of {n.op.name} changed a type: {old.type} -> {new.type}")
                env[old] = new
        g.outputs = [env[v] for v in self.outputs]
        g.updates = [(env[p], env[v]) for p, v in self.updates]
        return g

    def copy(self) -> "Graph":
        """A copy (new values); carries the memory plan over to the copied values."""
        g = self.rebuild()
        if self.arena is not None:
            mapping = dict(zip((v for n in self.nodes for v in n.outputs),
                               (v for n in g.nodes for v in n.outputs)))
            g.arena = {mapping[v]: off for v, off in self.arena.items()}
        return g

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __repr__(self):
        return (f"<Graph @{self.name}: {len(self.inputs)} inputs, {len(self.params)} params, "
                f"{len(self.nodes)} nodes>")


class _Building:
    def __init__(self, g):
        self.g = g
        self.token = None

    def __enter__(self):
        self.token = _current.set(self.g)
        return self.g

    def __exit__(self, *exc):
        _current.reset(self.token)


def _check_name(name: str):
    if not isinstance(name, str) or not name or name[0].isdigit() or not all(
            c.isalnum() or c in "_." for c in name):
        raise ValueError(f"value name must be letters, digits, '_' and '.', not starting with a "
                         f"digit; got {name!r}")
