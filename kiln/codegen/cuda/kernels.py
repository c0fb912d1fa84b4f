"""CUDA kernels generated from the IR: one numba.cuda kernel (Python source) per node,
a ``fusion`` node being one kernel. These kernel shapes cover the supported ops:

- *point* (``_point``): a grid-stride loop over the result's elements; each thread
  unflattens its index, loads every region input at its broadcast offset, computes a
  master's value at that point if the group has one (``transpose``: a permuted read;
  depthwise ``conv2d`` (one input channel per group): a direct convolution in gather
  form; ``max_pool2d``/``avg_pool2d`` and their gradients; slice, pad, concat,
  gather, ...), then the group's elementwise DAG, and stores the root. Elementwise ops
  and loop fusion groups are point kernels with no master.
- *reduce*: one block per output element (grid-stride over blocks), the block's
  threads stride over the reduced elements (the fused prologue evaluated on the fly),
  then a tree reduction in shared memory. ``reduce_sum|mean|max|min``.
- *softmax*: one block per slice: a shared-memory max, then exp and a shared sum.
- *scatter*: ``scatter_add`` (the gradient of gather): zero the result, then atomic
  adds, one thread per update element.
- *matmul* and *implicit_gemm* (kernels_gemm.py): a register-tiled GEMM. A block
  computes a ``bm`` x ``bn`` tile of C (``LaunchConfig``; 64 x 64 on a GPU) with
  (bn/tn) x (bm/tm) threads, each holding tm x tn accumulators (4 x 4) in registers;
  ``bk``-deep slices of A (stored k-major, rows padded against bank conflicts) and B
  are staged in shared memory by coalesced loads, out-of-range elements loaded as 0.
  Each accumulator goes through the group's elementwise epilogue (bias, activation,
  residual add) and is stored once, bounds-checked. ``matmul``: batch dims on grid z
  with broadcast batch strides. ``conv2d`` (not depthwise) and ``conv2d_transpose``:
  implicit GEMMs whose rows are output pixels (n, y, x) and whose k runs over the
  window taps (i, j, c), A gathered from the NHWC image with padding by bounds check
  (no im2col or padded copy), B the kernel viewed as [kh*kw*cin, cout]; conv groups on
  grid z. ``conv2d_backprop_kernel``: dW[(i,j,c), o] = sum over (n,y,x) of
  X_window * dY, a GEMM whose reduction (batch x image) is split over grid z into
  chunks that add atomically into the zeroed result (split-K).
- *scan* (kernels_scan.py): one persistent launch for a whole recurrence; its blocks
  loop over the steps and run the body's groups as block-stride loops of the same
  per-element code (``point_element``). A group may hold several point masters
  (the ``slice``s of an LSTM's gates) that read group inputs at the root's index.

Every kernel takes flat 1-D arrays -- outputs, then the node's operands -- and then
one integer per graph symbol (``d_N``): one compiled kernel serves every batch size.
Ops of other families have no CUDA kernel yet; ``unsupported`` names them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir.opdef import Kind, normalize_axis
from ..llvm.emit import broadcast_strides, collapse, contiguous_strides
from .scalar import EXPR, literal
from .points import AT_POINT
from .kernels_gemm import GEMM, gemm_kernel
from .source import Src, aff, dag, is_inline_constant, numel, offset, sym, unflatten

EW = (Kind.ELEMENTWISE, Kind.BROADCAST)


@dataclass(frozen=True)
class LaunchConfig:
    """Threads per block of 1-D kernels (a power of two) and the most blocks a
    grid-stride kernel launches. GEMM kernels (kernels_gemm.py): a block computes a
    ``bm`` x ``bn`` tile of C with (bn/tn) x (bm/tm) threads of ``tm`` x ``tn``
    accumulators each, staging ``bk``-deep slices of A and B in shared memory; a
    split-K GEMM (the conv kernel gradient) splits its reduction until about
    ``split_blocks`` blocks run."""
    block: int = 256
    max_blocks: int = 4096
    bm: int = 64
    bn: int = 64
    bk: int = 16
    tm: int = 4
    tn: int = 4
    split_blocks: int = 264

    def __post_init__(self):
        nt = (self.bm // self.tm) * (self.bn // self.tn)
        if self.bm % self.tm or self.bn % self.tn or (self.bm * self.bk) % nt or \
                (self.bn * self.bk) % nt or nt % self.bk:
            raise ValueError(f"GEMM tile {self.bm}x{self.bn}x{self.bk} / {self.tm}x{self.tn}: "
                             f"tm, tn must divide bm, bn, and bk the {nt} threads, which must "
                             f"divide each tile's bk slice")


SIMULATOR = LaunchConfig(block=32, max_blocks=4, bm=8, bn=8, bk=4, tm=2, tn=2, split_blocks=4)


@dataclass
class Kernel:
    name: str
    source: str
    shape: str            # which kernel shape: point | reduce | softmax | matmul
    grid: tuple           # of source expressions over the symbols (evaluated at launch)
    block: tuple
    zero_grid: tuple = ()  # scatter: first launch ``<name>_zero(out0, symbols...)`` on this grid
    #: scan: arena views passed after the operands, each (byte offset, bytes, numpy dtype name)
    scratch: tuple = ()

    def scratch_views(self, arena, bindings: dict) -> list:
        """The kernel's scratch arguments: typed views of the device arena."""
        views = []
        for off, nbytes, dt in self.scratch:
            o = off.evaluate(bindings)
            views.append(arena[o:o + nbytes.evaluate(bindings)].view(dt))
        return views

    def launch_dims(self, bindings: dict) -> tuple:
        env = {sym(s): v for s, v in bindings.items()}
        env["min"], env["max"] = min, max
        return (tuple(int(eval(g, {"__builtins__": {}}, env)) for g in self.grid),  # noqa: S307
                self.block)

    def zero_dims(self, bindings: dict) -> tuple:
        return Kernel(self.name, "", "", self.zero_grid, self.block).launch_dims(bindings)

    @property
    def launch_text(self) -> str:
        text = f"grid=({', '.join(self.grid)}) block={self.block}"
        if self.zero_grid:
            text = f"{self.name}_zero: grid=({', '.join(self.zero_grid)}) block={self.block}; then " + text
        return text


def _ceil(a: str, b: int) -> str:
    return f"(({a}) + {b - 1}) // {b}"


def _header(node) -> tuple:
    """The kernel's operand argument names: outputs, then inputs."""
    outs = [f"out{i}" for i in range(len(node.outputs))]
    ins = [f"in{i}" for i in range(len(node.inputs))]
    return outs, ins


def _signature(name, outs, ins, symbols) -> str:
    return f"def {name}({', '.join([*outs, *ins, *[sym(s) for s in symbols]])}):"


class Group:
    """A node seen as a fused group: its nodes, its inputs (one per kernel operand),
    the master (a non-elementwise op, or None) and the root value.

    A group may hold several masters when each is computed at a point (a family of
    ``at``, e.g. the ``slice``s of an LSTM's gates), reads only group inputs and has
    the root's shape: ``masters`` lists them, ``master`` is the first. A point group may
    have several results of one shape (``roots``; ``root`` is the first)."""

    def __init__(self, node, at=None):
        at = AT_POINT if at is None else at
        if node.op.family == "fusion":
            body = node.regions[0]
            self.nodes, self.inputs, self.roots = list(body.nodes), list(body.inputs), list(body.outputs)
        else:
            self.nodes, self.inputs, self.roots = [node], list(node.inputs), [node.outputs[0]]
        self.root = self.roots[0]
        masters = [n for n in self.nodes if n.op.kind not in EW and not is_inline_constant(n)]
        if len(self.roots) > 1 and any(m.op.family not in at for m in masters):
            raise NotImplementedError("fusion groups around a matmul, conv or reduction with several results")
        if len(masters) > 1 and not all(
                m.op.family in at and all(v in self.inputs for v in m.inputs)
                and m.outputs[0].type.shape == self.root.type.shape for m in masters):
            raise NotImplementedError(f"a fusion group with several non-elementwise ops "
                                      f"({', '.join(n.op.name for n in masters)})")
        self.masters = masters
        self.master = masters[0] if masters else None
        self.arg = {}
        for k, v in enumerate(self.inputs):
            self.arg.setdefault(v, f"in{k}")

    def leaves(self):
        """Inputs read by a node other than a master."""
        return [v for v in dict.fromkeys(self.inputs)
                if any(v in n.inputs for n in self.nodes if n not in self.masters)]


def point_element(src: Src, g: Group, flat: str, outs, at=None):
    """Emit the computation of element ``flat`` (a flat index of the root) of a point
    group and its stores into arrays ``outs`` (one per root; a name for one): unflatten,
    load the leaves, the masters' values at the point, the elementwise DAG, then every
    store. Serves grid-stride kernels (``_point``) and block-stride loops
    (kernels_scan.py); ``at`` maps master families to their point generators (default
    ``AT_POINT``)."""
    outs = [outs] if isinstance(outs, str) else list(outs)
    at = AT_POINT if at is None else at
    out_t = g.root.type
    leaves = g.leaves()
    env = {}
    if not g.masters:        # merge dims every operand walks contiguously: fewer div/mod
        shape, strides = collapse(out_t.shape, contiguous_strides(out_t.shape),
                                  *[broadcast_strides(v.type, out_t.shape) for v in leaves])
        strides = strides[1:]
    else:
        shape = out_t.shape
        strides = [broadcast_strides(v.type, out_t.shape) for v in leaves]
    idx = unflatten(src, flat, shape, "i")
    for k, (v, s) in enumerate(zip(leaves, strides)):
        src(f"x{k}_ = {g.arg[v]}[{offset(idx, s)}]")
        env[v] = f"x{k}_"
    for k, m in enumerate(g.masters):
        e = at[m.op.family](src, g, m, idx)
        if len(g.masters) > 1:
            src(f"m{k}_ = {e}")
            e = f"m{k}_"
        env[m.outputs[0]] = e
    dag(src, g.nodes, env, skip=g.masters)
    for out, r in zip(outs, g.roots):
        src(f"{out}[{flat}] = {env[r]}")


def _point(name, node, g: Group, symbols, cfg) -> Kernel:
    src = Src()
    out_t = g.root.type
    outs, ins = _header(node)
    src("@cuda.jit")
    src(_signature(name, outs, ins, symbols))
    src.indent()
    src(f"total_ = {numel(out_t.shape)}")
    src("i_ = cuda.grid(1)")
    src("step_ = cuda.gridsize(1)")
    src("while i_ < total_:")
    src.indent()
    point_element(src, g, "i_", outs)
    src("i_ += step_")
    total = numel(out_t.shape)
    grid = f"max(1, min({_ceil(total, cfg.block)}, {cfg.max_blocks}))"
    return Kernel(name, src.text(), "point", (grid,), (cfg.block,))


_IDENT = {"reduce_sum": 0, "reduce_mean": 0, "reduce_max": float("-inf"), "reduce_min": float("inf")}


def _combine(op, a, b, dt) -> str:
    if op == "reduce_max":
        return f"({a} if ({a} > {b} or {a} != {a}) else {b})" if dt.is_float else f"max({a}, {b})"
    if op == "reduce_min":
        return f"({a} if ({a} < {b} or {a} != {a}) else {b})" if dt.is_float else f"min({a}, {b})"
    return f"({a} + {b})"


def _ident(op, dt):
    v = _IDENT[op]
    if not dt.is_float and op == "reduce_max":
        v = -(2 ** (8 * dt.itemsize - 1))
    if not dt.is_float and op == "reduce_min":
        v = 2 ** (8 * dt.itemsize - 1) - 1
    return literal(v, dt)


def _block_reduce(src: Src, cfg, combine):
    """Tree reduction of sm_[0:block] (every thread of the block takes part)."""
    src("cuda.syncthreads()")
    src(f"s_ = {cfg.block // 2}")
    src("while s_ > 0:")
    src("    if tid_ < s_:")
    src(f"        sm_[tid_] = {combine('sm_[tid_]', 'sm_[tid_ + s_]')}")
    src("    cuda.syncthreads()")
    src("    s_ //= 2")


def reduce_index(src, x_t, kept, axes, out_flat, red_flat: str) -> list:
    """Names of a reduction operand's index: the kept axes unflattened from the output
    element ``out_flat`` (or, given a list, those names: unflattened earlier, outside
    the loop), the reduced ones from the reduction element ``red_flat``."""
    idx = [None] * x_t.rank
    ko = out_flat if isinstance(out_flat, list) else unflatten(
        src, out_flat, [x_t.shape[k] for k in kept], "o")
    for k, nm in zip(kept, ko):
        idx[k] = nm
    for k, nm in zip(axes, unflatten(src, red_flat, [x_t.shape[k] for k in axes], "q")):
        idx[k] = nm
    return idx


def _reduce(name, node, g: Group, symbols, cfg) -> Kernel:
    m = g.master
    if g.root is not m.outputs[0]:
        raise NotImplementedError("elementwise ops after a reduction in one group")
    x_t = m.inputs[0].type
    dt = x_t.dtype
    op = m.op.name
    axes = sorted(normalize_axis(op, a, x_t.rank) for a in m.attrs["axes"])
    kept = [k for k in range(x_t.rank) if k not in axes]
    src = Src()
    outs, ins = _header(node)
    src("@cuda.jit")
    src(_signature(name, outs, ins, symbols))
    src.indent()
    src(f"sm_ = cuda.shared.array({cfg.block}, {dt.np.name})")
    src("tid_ = cuda.threadIdx.x")
    src(f"nout_ = {numel([x_t.shape[k] for k in kept])}")
    nred = numel([x_t.shape[k] for k in axes])
    src(f"nred_ = {nred}")
    src("o_ = cuda.blockIdx.x")
    src("while o_ < nout_:")
    src.indent()
    src(f"acc_ = {_ident(op, dt)}")
    src("q_ = tid_")
    src("while q_ < nred_:")
    src.indent()
    idx = reduce_index(src, x_t, kept, axes, "o_", "q_")
    env = {}
    for k, v in enumerate(dict.fromkeys(g.inputs)):
        src(f"x{k}_ = {g.arg[v]}[{offset(idx, broadcast_strides(v.type, x_t.shape))}]")
        env[v] = f"x{k}_"
    dag(src, g.nodes, env, skip=(m,))
    src(f"acc_ = {_combine(op, 'acc_', env[m.inputs[0]], dt)}")
    src(f"q_ += {cfg.block}")
    src.dedent()
    src("sm_[tid_] = acc_")
    _block_reduce(src, cfg, lambda a, b: _combine(op, a, b, dt))
    src("if tid_ == 0:")
    src("    out0[o_] = sm_[0] / nred_" if op == "reduce_mean" else "    out0[o_] = sm_[0]")
    src("cuda.syncthreads()")
    src("o_ += cuda.gridDim.x")
    grid = f"max(1, min({numel([x_t.shape[k] for k in kept])}, {cfg.max_blocks}))"
    return Kernel(name, src.text(), "reduce", (grid,), (cfg.block,))


def _softmax(name, node, g: Group, symbols, cfg) -> Kernel:
    t = node.inputs[0].type
    dt = t.dtype
    ax = normalize_axis("softmax", node.attrs["axis"], t.rank)
    outer, r, inner = numel(t.shape[:ax]), aff(t.shape[ax]), numel(t.shape[ax + 1:])
    src = Src()
    src("@cuda.jit")
    src(_signature(name, ["out0"], ["in0"], symbols))
    src.indent()
    src(f"sm_ = cuda.shared.array({cfg.block}, {dt.np.name})")
    src("tid_ = cuda.threadIdx.x")
    src(f"inner_ = {inner}")
    src(f"nr_ = {r}")
    src(f"nsl_ = {outer} * inner_")
    src("sl_ = cuda.blockIdx.x")
    src("while sl_ < nsl_:")
    src.indent()
    src("base_ = (sl_ // inner_) * nr_ * inner_ + sl_ % inner_")
    src(f"acc_ = {literal(float('-inf'), dt)}")
    src("k_ = tid_")
    src("while k_ < nr_:")
    src("    e_ = in0[base_ + k_*inner_]")
    src("    acc_ = e_ if (e_ > acc_ or e_ != e_) else acc_")
    src(f"    k_ += {cfg.block}")
    src("sm_[tid_] = acc_")
    _block_reduce(src, cfg, lambda a, b: f"({a} if ({a} > {b} or {a} != {a}) else {b})")
    src("mx_ = sm_[0]")
    src("cuda.syncthreads()")
    src(f"acc_ = {literal(0, dt)}")
    src("k_ = tid_")
    src("while k_ < nr_:")
    src("    e_ = math.exp(in0[base_ + k_*inner_] - mx_)")
    src("    out0[base_ + k_*inner_] = e_")
    src("    acc_ += e_")
    src(f"    k_ += {cfg.block}")
    src("sm_[tid_] = acc_")
    _block_reduce(src, cfg, lambda a, b: f"({a} + {b})")
    src(f"inv_ = {literal(1, dt)} / sm_[0]")
    src("k_ = tid_")
    src("while k_ < nr_:")
    src("    out0[base_ + k_*inner_] *= inv_")
    src(f"    k_ += {cfg.block}")
    src("cuda.syncthreads()")
    src("sl_ += cuda.gridDim.x")
    grid = f"max(1, min({outer} * {inner}, {cfg.max_blocks}))"
    return Kernel(name, src.text(), "softmax", (grid,), (cfg.block,))


def _scatter_add(name, node, g: Group, symbols, cfg) -> Kernel:
    """Zero the result (a first kernel), then one thread per update element adds it at
    its index with an atomic add (repeated indices accumulate; out-of-range skipped)."""
    upd_t, ind_t = node.inputs[0].type, node.inputs[1].type
    out_t = node.outputs[0].type
    ax = normalize_axis("scatter_add", node.attrs["axis"], out_t.rank)
    src = Src()
    sig = [sym(s) for s in symbols]
    src("@cuda.jit")
    src(f"def {name}_zero({', '.join(['out0', *sig])}):")
    src(f"    total_ = {numel(out_t.shape)}")
    src("    i_ = cuda.grid(1)")
    src("    while i_ < total_:")
    src(f"        out0[i_] = {literal(0, out_t.dtype)}")
    src("        i_ += cuda.gridsize(1)")
    src("")
    src("")
    src("@cuda.jit")
    src(_signature(name, ["out0"], ["in0", "in1"], symbols))
    src.indent()
    src(f"total_ = {numel(upd_t.shape)}")
    src("i_ = cuda.grid(1)")
    src("step_ = cuda.gridsize(1)")
    src("while i_ < total_:")
    src.indent()
    idx = unflatten(src, "i_", upd_t.shape, "i")
    a, t, b = idx[:ax], idx[ax:ax + ind_t.rank], idx[ax + ind_t.rank:]
    src(f"j_ = in1[{offset(t, contiguous_strides(ind_t.shape))}]")
    src(f"if 0 <= j_ < {aff(out_t.shape[ax])}:")
    src(f"    cuda.atomic.add(out0, {offset([*a, 'j_', *b], contiguous_strides(out_t.shape))}, in0[i_])")
    src("i_ += step_")

    def grid(total):
        return f"max(1, min({_ceil(total, cfg.block)}, {cfg.max_blocks}))"
    return Kernel(name, src.text(), "scatter", (grid(numel(upd_t.shape)),), (cfg.block,),
                  zero_grid=(grid(numel(out_t.shape)),))


def unsupported_ops(nodes) -> list:
    """Names of the ops among ``nodes`` (fusion bodies included) with no CUDA kernel."""
    bad = []
    for n in nodes:
        fam = n.op.family
        if fam == "fusion":
            bad += unsupported_ops(n.regions[0].nodes)
        elif fam == "scan":
            from .kernels_scan import scan_unsupported
            bad += scan_unsupported(n)
        elif fam in ("constant", "reshape", "reduce", "softmax", "scatter_add", *GEMM, *AT_POINT):
            continue
        elif fam == "elementwise" and n.op.name in EXPR:
            continue
        else:
            bad.append(n.op.name)
    return list(dict.fromkeys(bad))


def emit_kernel(name: str, node, symbols, cfg: LaunchConfig) -> Kernel:
    """The kernel of one node (a ``fusion`` node: its whole group)."""
    g = Group(node)
    master = g.master
    fam = master.op.family if master is not None else None
    if fam in GEMM:
        outs, ins = _header(node)
        k = gemm_kernel(name, node, g, ([*outs, *ins], [sym(s) for s in symbols]), cfg)
        if k is not None:
            return k
    if fam is None or fam in AT_POINT:
        return _point(name, node, g, symbols, cfg)
    if fam == "reduce":
        return _reduce(name, node, g, symbols, cfg)
    if fam == "scatter_add" and node.op.family == "scatter_add":
        return _scatter_add(name, node, g, symbols, cfg)
    if fam == "softmax" and node.op.family == "softmax":
        return _softmax(name, node, g, symbols, cfg)
    raise NotImplementedError(f"no CUDA kernel for a group around {master.op.name}")
