"""The IR text form.

```
graph @mlp(%x: f32[N,784]) -> f32[N,10] {
  param %dense.kernel: f32[784,512]
  %0: f32[N,512] = matmul(%x, %dense.kernel)
  %1: f32[N,10] = softmax(%0) {axis=-1}
  return %1
}
```

Inputs and parameters print by name; node outputs are numbered in order, so
printing is deterministic and ``print(parse(print(g))) == print(g)``. Types sit on
binders only. Attributes print in their op's declared order.
"""
from __future__ import annotations

import numpy as np

from .opdef import fmt_float
from .types import DType


def value_names(g, prefix: str = "") -> dict:
    """Print names: inputs and params by name, node outputs numbered in order (inside a
    region, prefixed with the owning node's name: ``%3.0``, ``%3.1``, ...)."""
    names = {}
    for v in g.inputs:
        names[v] = "%" + v.name
    for name, v in g.params.items():
        names[v] = "%" + name
    i = 0
    for n in g.nodes:
        for o in n.outputs:
            names[o] = f"%{prefix}{i}"
            i += 1
    return names


def fmt_attr(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return fmt_float(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, DType):
        return v.value
    if isinstance(v, tuple):  # ints, or a shape whose symbols print bare: [N, -1]
        return "[" + ", ".join(e if isinstance(e, str) else fmt_attr(e) for e in v) + "]"
    if isinstance(v, np.ndarray):
        return _fmt_array(v)
    raise TypeError(f"cannot print attribute value {v!r}")


def _fmt_array(a: np.ndarray) -> str:
    if a.ndim == 0:
        x = a.item()
        if isinstance(x, bool):
            return "true" if x else "false"
        return fmt_float(x) if isinstance(x, float) else str(x)
    return "[" + ", ".join(_fmt_array(e) for e in a) + "]"


def fmt_node(n, names, arena=None) -> str:
    def binder(o):
        at = f" @arena[{arena[o]}]" if arena and o in arena else ""
        return f"{names[o]}: {o.type}{at}"
    outs = ", ".join(binder(o) for o in n.outputs)
    args = ", ".join(names.get(v, "%<undefined>") for v in n.inputs)
    s = f"{outs} = {n.op.name}({args})"
    if n.attrs.items():
        s += " {" + ", ".join(f"{k}={fmt_attr(v)}" for k, v in n.attrs.items()) + "}"
    return s


def _node_lines(n, names, indent: str, arena=None) -> list:
    head = indent + fmt_node(n, names, arena)
    if not n.regions:
        return [head]
    lines = [head + " {"]
    prefix = names[n.outputs[0]][1:] + "." if n.outputs else "r."
    for r in n.regions:
        lines += _region_lines(r, prefix, indent + "  ")
    lines.append(indent + "}")
    return lines


def _region_lines(r, prefix: str, indent: str) -> list:
    """A region: ``^(%p0: T, ...):``, its nodes, ``yield`` its results."""
    names = value_names(r, prefix)
    lines = [indent + "^(" + ", ".join(f"{names[v]}: {v.type}" for v in r.inputs) + "):"]
    for n in r.nodes:
        lines += _node_lines(n, names, indent, r.arena)
    lines.append(indent + "yield " + ", ".join(names.get(v, "%<undefined>") for v in r.outputs))
    return lines


def print_graph(g) -> str:
    names = value_names(g)
    ins = ", ".join(f"{names[v]}: {v.type}" for v in g.inputs)
    outs = [str(v.type) for v in g.outputs]
    ret = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
    lines = [f"graph @{g.name}({ins}) -> {ret} {{"]
    for name, v in g.params.items():
        lines.append(f"  param %{name}: {v.type}")
    for n in g.nodes:
        lines += _node_lines(n, names, "  ", g.arena)
    for p, v in g.updates:
        lines.append(f"  {names.get(p, '%<undefined>')} <- {names.get(v, '%<undefined>')}")
    lines.append("  return " + ", ".join(names.get(v, "%<undefined>") for v in g.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"
