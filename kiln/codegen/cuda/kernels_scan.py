"""The ``scan`` kernel: a *persistent* kernel, ONE launch for the whole recurrence.

A thread block loops over the T steps; in each step it evaluates the body's nodes
in order, each as a block-cooperative loop (``for i_ in range(tid, n, nthreads)``)
whose iteration is the same "compute element i" code the grid-stride kernels use
(``point_element``: elementwise groups, injective masters such as the ``slice``s of
LSTM gates, and -- inside a body only -- a ``matmul`` master as a dot product per
element; ``_reduce_element``: a reduction, one thread per output element, with its
fused prologue and epilogue), with ``cuda.syncthreads()`` after every node.

Launch: ``block`` threads (LaunchConfig.block). When the body is row-independent
(``row_dim``: every carry, step and yielded value has the batch rows along axis 0
and each body node computes row r from row r only -- the forward pass of every
recurrent layer), the grid has min(N, max_blocks) blocks, each owning a contiguous
range of rows for all T steps (no grid-wide sync is needed: blocks never read each
other's rows); otherwise (a body that sums over the batch, as the weight gradients
of backprop through time do) one block runs the whole recurrence.

Buffers (all in device memory; the scratch is the node's arena scratch, laid out by
``scan_scratch_layout`` in kiln/passes/memory.py and passed as one typed view of
the whole scratch per dtype, each buffer a slice of it):

- carry j is read from the final-carry result ``out<j>`` (the initial carry is
  copied there before the first step) and the body writes its new value into the
  second buffer ``("carry", j)``; after the body (and a sync) it is copied back into
  ``out<j>``, so step t+1 reads exactly step t's result and ``out<j>`` holds the
  final carry at the end (also when T = 0);
- a sequence step is a slice of the operand when contiguous, else it is copied into
  its staging buffer ``("step", i)`` at the start of the step;
- a per-step output is written straight into its stack at t (a slice) when
  contiguous, else into ``("out", k)`` and copied into the stack after the body;
- the body's intermediates live at the body's own memory plan (``"body"``);
  a value yielded where it is not stored (twice, or a body input) is copied.

Steps run t = 0 .. T-1 or T-1 .. 0 (``reverse``). The kernel takes the scan's
outputs, its operands, the scratch views, then the symbols (``d_N``).
"""
from __future__ import annotations

import re

from ...ir.graph import ancestors
from ...ir.ops.control import split_operands, step_type
from ...ir.types import Affine, Poly
from ...passes.memory import classify, plan_memory, scan_scratch_layout, step_is_contiguous
from ..llvm.emit import broadcast_strides
from ...passes.scan_rows import row_dim
from .kernels import EW, Group, Kernel, _combine, _ident, _signature, point_element, reduce_index
from .points import AT_POINT
from .scalar import EXPR, literal
from .source import Src, aff, dag, is_inline_constant, numel, offset, unflatten

MAX_INLINE_CONSTANT = 64   # elements of a body constant written into the source as a tuple


def _at_matmul(src, g, n, idx):
    """[..., M, K] @ [..., K, P] at one result element: a dot product over K."""
    a_t, b_t = n.inputs[0].type, n.inputs[1].type
    c_t = n.outputs[0].type
    M, K, P = a_t.shape[-2], a_t.shape[-1], b_t.shape[-1]
    batch = c_t.shape[:-2]
    bidx, i, j = idx[:-2], idx[-2], idx[-1]
    a_bs = broadcast_strides(a_t.with_shape(a_t.shape[:-2]), batch)
    b_bs = broadcast_strides(b_t.with_shape(b_t.shape[:-2]), batch)
    ab = f"({offset(bidx, a_bs)}) * {aff(Affine.product([M, K]))}"
    bb = f"({offset(bidx, b_bs)}) * {aff(Affine.product([K, P]))}"
    A, B = g.arg[n.inputs[0]], g.arg[n.inputs[1]]
    src(f"m_ = {literal(0, c_t.dtype)}")
    src(f"for k_ in range({aff(K)}):")
    src(f"    m_ += {A}[{ab} + {i}*{aff(K)} + k_] * {B}[{bb} + k_*{aff(P)} + {j}]")
    return "m_"


#: point generators of a scan body's groups: the grid-stride ones, and matmul
BODY_AT = {**AT_POINT, "matmul": _at_matmul}
_BODY_FAMILIES = ("constant", "reshape", "reduce", *BODY_AT)


def _reduce_element(src: Src, g: Group, flat: str, out: str):
    """Output element ``flat`` of a reduce group: one thread loops over the reduced
    elements (the fused prologue evaluated on the fly), then the epilogue."""
    from ...ir.opdef import normalize_axis
    m = g.master
    x_t, r_t = m.inputs[0].type, m.outputs[0].type
    if g.root.type.shape != r_t.shape:
        raise NotImplementedError("a reduction whose epilogue broadcasts, in a scan's body")
    dt, op = x_t.dtype, m.op.name
    axes = sorted(normalize_axis(op, a, x_t.rank) for a in m.attrs["axes"])
    kept = [k for k in range(x_t.rank) if k not in axes]
    pro = ancestors(g.nodes, m.inputs[0])
    pro_nodes = [n for n in g.nodes if n in pro]
    epi_nodes = [n for n in g.nodes if n not in pro and n is not m]
    nred = numel([x_t.shape[k] for k in axes])
    ko = unflatten(src, flat, [x_t.shape[k] for k in kept], "o")
    src(f"acc_ = {_ident(op, dt)}")
    src(f"for q_ in range({nred}):")
    src.indent()
    idx = reduce_index(src, x_t, kept, axes, ko, "q_")
    env = {}
    for k, v in enumerate(dict.fromkeys(g.inputs)):
        if v is m.inputs[0] or any(v in n.inputs for n in pro_nodes):
            src(f"x{k}_ = {g.arg[v]}[{offset(idx, broadcast_strides(v.type, x_t.shape))}]")
            env[v] = f"x{k}_"
    dag(src, pro_nodes, env)
    src(f"acc_ = {_combine(op, 'acc_', env[m.inputs[0]], dt)}")
    src.dedent()
    if op == "reduce_mean":
        src(f"acc_ = acc_ / {dt.np.name}({nred})")
    env = {m.outputs[0]: "acc_"}
    oidx = list(ko) if not m.attrs["keepdims"] else \
        [ko[kept.index(k)] if k in kept else "0" for k in range(x_t.rank)]
    for k, v in enumerate(dict.fromkeys(g.inputs)):
        if any(v in n.inputs for n in epi_nodes):
            src(f"e{k}_ = {g.arg[v]}[{offset(oidx, broadcast_strides(v.type, r_t.shape))}]")
            env[v] = f"e{k}_"
    dag(src, epi_nodes, env, prefix="u")
    src(f"{out}[{flat}] = {env[g.root]}")


def _unsupported_body(nodes) -> list:
    bad = []
    for n in nodes:
        fam = n.op.family
        if fam == "fusion":
            bad += _unsupported_body(n.regions[0].nodes)
        elif fam == "scan":
            bad.append("scan (inside a scan's body)")
        elif fam == "constant" and not is_inline_constant(n) and _static_size(n) is None:
            bad.append(f"constant of more than {MAX_INLINE_CONSTANT} elements (in a scan's body)")
        elif fam in _BODY_FAMILIES or (n.op.kind in EW and n.op.name in EXPR):
            continue
        else:
            bad.append(f"{n.op.name} (in a scan's body)")
    return bad


def scan_unsupported(node) -> list:
    """Names of the ops in a ``scan``'s body the persistent scan kernel cannot run."""
    return list(dict.fromkeys(_unsupported_body(node.regions[0].nodes)))


def _static_size(n):
    size = n.attrs["value"].size
    return size if size <= MAX_INLINE_CONSTANT else None


def _const_tuple(n) -> str:
    dt = n.outputs[0].type.dtype
    vals = [literal(x, dt) for x in n.attrs["value"].reshape(-1).tolist()]
    return "(" + ", ".join(vals) + ",)"


_ASSIGNED = re.compile(r"^\s*(?:for\s+)?([A-Za-z_]\w*)\s*(?:[-+*/]?=(?!=)|\s+in\b)", re.M)


def _private(text: str, suffix: str) -> str:
    """Rename every local a snippet assigns (``m_``, ``i0``, ``x3_``...) with a suffix,
    so that snippets of different nodes share no variable (numba types each once)."""
    names = sorted(set(_ASSIGNED.findall(text)), key=len, reverse=True)
    if not names:
        return text
    pat = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    return pat.sub(lambda mo: mo.group(1) + suffix, text)


def _loop(shape, rows) -> str:
    """Header of the block-stride loop over the elements of a buffer of ``shape`` that
    this block owns: all of them, or (``rows``) those of its rows r0__ .. r1__-1."""
    if rows is None:
        return f"for i_ in range(tid__, {numel(shape)}, nth__):"
    inner = numel(shape[1:])
    return f"for i_ in range(r0__*{inner} + tid__, r1__*{inner}, nth__):"


def _block_loop(header: str, emit) -> Src:
    sub = Src()
    sub(header)
    sub.indent()
    emit(sub)
    return sub


def _poly_src(p: Poly) -> str:
    terms = [aff(Affine(c, syms)) for syms, c in sorted(p.terms.items()) if c]
    return "(" + " + ".join(terms) + ")" if len(terms) > 1 else (terms[0] if terms else "0")


def emit_scan(name: str, node, symbols, cfg, base: Poly) -> Kernel:
    """The persistent kernel of one ``scan`` node whose scratch starts at byte ``base``
    of the arena (see the module docstring)."""
    (body,) = node.regions
    a = node.attrs
    nc, ns, axis, reverse = a["num_carries"], a["num_sequences"], a["axis"], a["reverse"]
    carries, seqs, invs = split_operands(node.inputs, nc, ns)
    nper = len(body.outputs) - nc
    layout = scan_scratch_layout(node)
    rows = row_dim(node)
    storage = classify(body)
    boffs = body.arena if body.arena is not None else plan_memory(body)
    # the scratch comes as ONE view per dtype (few kernel arguments); each buffer in it
    # is a slice made at the top of the kernel
    views, slices = {}, []

    def scratch_arg(arg, off, t):
        dt, isz = t.dtype.np.name, t.dtype.itemsize
        whole = views.setdefault(dt, f"sc_{dt}__")
        start = _poly_src(Poly({k: c // isz for k, c in off.terms.items()}))
        slices.append(f"{arg} = {whole}[{start}:{start} + {numel(t.shape)}]")
        return arg

    # where each body value lives (an array expression)
    name_of = {}
    b_in = list(body.inputs)
    for j in range(nc):
        name_of[b_in[j]] = f"out{j}"
    for i, v in enumerate(seqs):
        name_of[b_in[nc + i]] = (f"q{i}__" if step_is_contiguous(v.type, axis) else
                                 scratch_arg(f"st{i}__", layout[("step", i)], b_in[nc + i].type))
    for k in range(len(invs)):
        name_of[b_in[nc + ns + k]] = f"in{nc + ns + k}"
    target = []
    for j in range(nc):
        target.append(scratch_arg(f"a{j}__", layout[("carry", j)], carries[j].type))
    for k in range(nper):
        o = node.outputs[nc + k]
        target.append(f"y{k}__" if step_is_contiguous(o.type, axis) else
                      scratch_arg(f"so{k}__", layout[("out", k)], body.outputs[nc + k].type))
    for idx, n in enumerate(body.nodes):
        for o in n.outputs:
            st = storage[o]
            if st[0] == "const":
                name_of[o] = _const_tuple(n)
            elif st[0] == "alias":
                name_of[o] = name_of[st[1]]
            elif st[0] == "output":
                name_of[o] = target[st[1]]
            else:
                name_of[o] = scratch_arg(f"b{idx}_{len(slices)}__", layout["body"] + boffs[o], o.type)

    src = Src()
    src("# persistent: this one launch runs all T steps; "
        + ("each block owns a range of batch rows" if rows is not None else
           "one block (the body is not row-independent)"))
    src("@cuda.jit")
    src(_signature(name, [f"out{i}" for i in range(len(node.outputs))],
                   [f"in{i}" for i in range(len(node.inputs))] + list(views.values()), symbols))
    src.indent()
    for line in slices:
        src(line)
    src("tid__ = cuda.threadIdx.x")
    src("nth__ = cuda.blockDim.x")
    src(f"T__ = {aff(seqs[0].type.shape[axis])}")
    if rows is not None:     # this block's rows: r0__ .. r1__-1
        src(f"nrow__ = {aff(rows)}")
        src("rpb__ = (nrow__ + cuda.gridDim.x - 1) // cuda.gridDim.x")
        src("r0__ = cuda.blockIdx.x * rpb__")
        src("r1__ = r0__ + rpb__")
        src("if r1__ > nrow__:")
        src("    r1__ = nrow__")
    for j, v in enumerate(carries):
        src(_loop(v.type.shape, rows))
        src(f"    out{j}[i_] = in{j}[i_]")
    src("cuda.syncthreads()")
    src("for s__ in range(T__):")
    src.indent()
    src("t__ = T__ - 1 - s__" if reverse else "t__ = s__")

    def stack_index(t, e):    # element e of step t__ of a stacked buffer of type t
        outer = Affine.product(t.shape[:axis])
        inner = numel(t.shape[axis + 1:])
        if outer == Affine(1):
            return f"t__*{inner} + {e}"
        return f"({e} // {inner} * {aff(t.shape[axis])} + t__) * {inner} + {e} % {inner}"

    staged = False
    for i, v in enumerate(seqs):
        inner = numel(step_type(v.type, axis).shape)
        if step_is_contiguous(v.type, axis):
            src(f"q{i}__ = in{nc + i}[t__*{inner}:(t__ + 1)*{inner}]")
        else:
            staged = True
            src(_loop(step_type(v.type, axis).shape, rows))
            src(f"    st{i}__[i_] = in{nc + i}[{stack_index(v.type, 'i_')}]")
    for k in range(nper):
        o = node.outputs[nc + k]
        if step_is_contiguous(o.type, axis):
            inner = numel(body.outputs[nc + k].type.shape)
            src(f"y{k}__ = out{nc + k}[t__*{inner}:(t__ + 1)*{inner}]")
    if staged:
        src("cuda.syncthreads()")

    for idx, n in enumerate(body.nodes):
        if n.op.family in ("constant", "reshape"):
            continue
        sub = _body_node(n, name_of, rows)
        for line in _private(sub.text(), f"_{idx}").splitlines():
            src(line)
        src("cuda.syncthreads()")

    # yielded values not stored where their output goes: copy them there
    copies = [(p, v) for p, v in enumerate(body.outputs) if name_of[v] != target[p]]
    for p, v in copies:
        src(_loop(v.type.shape, rows))
        src(f"    {target[p]}[i_] = {name_of[v]}[i_]")
    if copies:
        src("cuda.syncthreads()")
    for j, v in enumerate(carries):
        src(_loop(v.type.shape, rows))
        src(f"    out{j}[i_] = a{j}__[i_]")
    for k in range(nper):
        o = node.outputs[nc + k]
        if not step_is_contiguous(o.type, axis):
            src(_loop(body.outputs[nc + k].type.shape, rows))
            src(f"    out{nc + k}[{stack_index(o.type, 'i_')}] = so{k}__[i_]")
    src("cuda.syncthreads()")
    grid = "1" if rows is None else f"max(1, min({aff(rows)}, {cfg.max_blocks}))"
    scratch = tuple((base, layout["size"], dt) for dt in views)
    return Kernel(name, src.text(), "scan", (grid,), (cfg.block,), scratch=scratch)


def _body_node(n, name_of, rows) -> Src:
    """The block-stride loop of one body node (a ``fusion`` node: its whole group)."""
    g = Group(n, at=BODY_AT)
    g.arg = {}
    for k, v in enumerate(g.inputs):
        g.arg.setdefault(v, name_of[n.inputs[k]])
    outs = [name_of[o] for o in n.outputs]
    fams = {m.op.family for m in g.masters}
    header = _loop(g.root.type.shape, rows)
    if fams == {"reduce"} and len(outs) == 1:
        return _block_loop(header, lambda s: _reduce_element(s, g, "i_", outs[0]))
    if fams <= set(BODY_AT):
        return _block_loop(header, lambda s: point_element(s, g, "i_", outs, at=BODY_AT))
    raise NotImplementedError(f"no block-cooperative CUDA code for a group around "
                              f"{', '.join(sorted(fams))} in a scan's body")
