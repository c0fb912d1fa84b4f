"""Layout: put constant weights in the layout their kernel wants.

Algorithm. For every ``matmul(a, W)`` whose right operand ``W`` is a known 2-D float32
matrix (a parameter whose value the graph holds and does not update, or a constant)
and is not batched, rewrite to ``matmul_packed(a, pack_panels(W))``: the panel width
NR is two vector registers of the target (32 floats with AVX-512, 16 with AVX2, 8
with SSE). ``pack_panels`` of a known matrix is folded by ``constfold``, which runs
after this pass, so the packing happens once at compile time -- never per call. A
weight the graph updates (training) is packed at run time, once per step: a copy of
K x P floats against the M x K x P multiply-adds it speeds up.
Any other 2-D float32 right operand with a static column count (an activation or a
gradient: ``x^T @ dy`` and ``dy @ W^T`` of a backward pass) is packed at run time too;
a ``transpose`` feeding either side is absorbed (``pack_panels{perm}`` packs the
transpose straight from the source, ``matmul_packed{transpose_a}`` reads a 2-D left
operand transposed), so backward passes materialize no transposes. Batched matmuls
whose operands have the same batch dims (attention) get batched panels.
A ``conv2d`` (groups=1) with a known or trained kernel [kh,kw,C,O] becomes
``conv2d_packed``: the kernel reshaped to [kh*kw*C, O] and packed the same way (at
compile time, or per call for a trained kernel), run as an implicit GEMM -- except a
3x3, stride-1 conv with a known kernel and 16..256 channels, which becomes
``conv2d_winograd`` (kiln/ir/ops/winograd.py: 2.25x fewer multiply-adds; its kernel
transform G g G^T is computed here, packed, and folded): ResNet-style models at batch
1 and 256 ran 25-28% faster, the seed CNN 19-27% (in-process A/B, 2 cores).
A ``scan`` whose body only multiplies by a known loop-invariant weight (an RNN's
recurrent kernel) gets that weight packed once, outside the loop, and its body's
matmul becomes ``matmul_packed``. An LSTM step in such a body -- GEMM, bias, gate
slices, activations, cell update (kiln/passes/lstm_cell.py finds it) -- with a known
kernel and bias becomes one ``lstm_cell_packed`` (kiln/ir/ops/lstm.py): the kernel's
and bias' columns are interleaved here so each panel holds the four gates of NR/4
units, and the gates run as the GEMM's epilogue (kiln/codegen/llvm/kernels_lstm.py
says what that gains). When that step's GEMM reads ``concat(x_t, h)`` (an LSTM layer's
inference body), its x part is made for all steps beforehand by ``lstm_project`` -- at
batches up to LSTM_PROJECT_MAX_ROWS, decided per call -- and the step multiplies only h
(a batch-1 step streams a third less of W: the bench LSTM 0.92x at batch 1, 0.89x at
4, 0.93x at 8, in-process A/B; results bit for bit the same). Several matmuls of one
weight share one packed copy (CSE in ``simplify`` does not run after this pass, so the
pass memoizes per weight itself).
"""
from __future__ import annotations

import numpy as np

from .. import target as targets
from ..ir.graph import Graph
from ..ir.opdef import OpTypeError, get_op
from ..ir.ops.lstm import interleave
from ..ir.ops.winograd import winograd_weights
from ..ir.types import DType, TensorType
from .lstm_cell import match_cells
from .manager import register_pass


#: max pooling after a conv (and its bias and relu) is computed by the conv itself
POOL_INTO_CONV = True
#: 3x3 stride-1 convs with known kernels run in the Winograd domain (conv2d_winograd)
WINOGRAD = True
#: ... when they have at least this many channels in and out (the transforms' cost is
#: per channel; a 1-3 channel stem gains nothing), at most WINOGRAD_MAX_CHANNELS (the
#: kernel's stack buffers hold >= one MR block of tiles), and this many output pixels
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MAX_CHANNELS = 256
WINOGRAD_MIN_PIXELS = 16
#: an LSTM step in a recurrence with a known kernel becomes one lstm_cell_packed
LSTM_CELL = True
#: ... whose input projection, when the step's GEMM reads [x_t, h], is made for all steps
#: beforehand (lstm_project) at batches up to LSTM_PROJECT_MAX_ROWS
LSTM_PROJECT = True
LSTM_PROJECT_MAX_ROWS = 8


def winograd_fits(x_t, w_t, attrs) -> bool:
    """Whether conv2d(x, w) with ``attrs`` is one conv2d_winograd takes: a 3x3 window,
    stride 1, no dilation, static image sizes, channels in the kernel's range."""
    kh, kw, c, o = w_t.shape
    _, h, wd, _ = x_t.shape
    if (kh, kw) != (3, 3) or tuple(attrs["strides"]) != (1, 1) or tuple(attrs["dilations"]) != (1, 1):
        return False
    if not (isinstance(h, int) and isinstance(wd, int) and isinstance(c, int) and isinstance(o, int)):
        return False
    p = attrs["pads"]
    pixels = (h + p[0] + p[1] - 2) * (wd + p[2] + p[3] - 2)
    return (WINOGRAD_MIN_CHANNELS <= min(c, o) and max(c, o) <= WINOGRAD_MAX_CHANNELS
            and pixels >= WINOGRAD_MIN_PIXELS)


def panel_width(target=None) -> int:
    return 2 * (targets.current() if target is None else targets.get(target)).f32_lanes


@register_pass("layout")
def layout(g: Graph) -> Graph:
    nr = panel_width()
    known_params = {k for k in g.param_values if k not in g.updated_params}
    constants: set = set()     # outputs of constant nodes in the new graph
    packed: dict = {}          # weight (new graph) -> its packed value

    def is_known(v) -> bool:
        return (v.kind == "param" and v.name in known_params) or v in constants

    variables = g.updated_params

    def is_packable(v) -> bool:
        """Known weights are packed once at compile time; weights the graph updates
        (training) are packed at run time, once per step, before the first matmul."""
        return is_known(v) or (v.kind == "param" and v.name in variables)

    def rewrite(new_g: Graph, n, ins):
        if n.op.family == "constant":
            nn = new_g.make_node(n.op, [], n.attrs)
            new_g.nodes.append(nn)
            constants.add(nn.outputs[0])
            return nn.outputs
        if n.op.name == "conv2d":
            return _conv(new_g, n, ins)
        if n.op.name == "max_pool2d" and POOL_INTO_CONV:
            return _pool_into_conv(new_g, n, ins)
        if n.op.name == "scan":
            return _scan(new_g, n, ins)
        if n.op.name != "matmul":
            return None
        return _matmul(new_g, *ins)

    def _matmul(new_g, a, w):
        if (w.type.rank < 2 or not isinstance(w.type.shape[-1], int)
                or w.dtype is not DType.f32 or a.type.rank < 2):
            return None
        if w.type.rank > 2 and (a.type.rank != w.type.rank or a.type.shape[:-2] != w.type.shape[:-2]):
            return None          # broadcast batch dims: the plain matmul
        n = w.type.shape[-1]
        if w.type.rank == 2 and is_packable(w):       # a weight: one packed copy per weight
            if w not in packed:
                packed[w] = new_g.op("pack_panels", w, nr=nr)
            bp = packed[w]
        else:                    # a value of this call (a gradient, an activation)
            p = w.producer
            if p is not None and p.op.name == "transpose":     # packed from its source
                bp = new_g.op("pack_panels", p.inputs[0], nr=nr, perm=tuple(p.attrs["perm"]))
            else:
                bp = new_g.op("pack_panels", w, nr=nr)
        src = _transposed(a) if a.type.rank == 2 else None
        if src is not None:
            return (new_g.op("matmul_packed", src, bp, n=n, transpose_a=True),)
        return (new_g.op("matmul_packed", a, bp, n=n),)

    def known_value(v):
        return g.param_values[v.name] if v.kind == "param" else v.producer.attrs["value"]

    def _conv(new_g, n, ins):
        x, w = ins
        if n.attrs["groups"] != 1 or not is_packable(w) or w.dtype is not DType.f32:
            return None
        kh, kw, c, o = w.type.shape
        a = n.attrs
        if WINOGRAD and is_known(w) and winograd_fits(x.type, w.type, a):
            if ("winograd", w) not in packed:
                # a param, not a constant node: the IR text (printed by the verifier
                # after every pass, hashed for the compile cache) names it, never
                # spells out its 16*C*O values
                u = new_g.add_param(new_g.unique_param_name("winograd"),
                                    winograd_weights(np.asarray(known_value(w))))
                packed[("winograd", w)] = new_g.op("pack_panels", u, nr=nr)
            return (new_g.op("conv2d_winograd", x, packed[("winograd", w)], n=o, pads=a["pads"]),)
        if w not in packed:
            flat = new_g.op("reshape", w, shape=(kh * kw * c, o))
            packed[w] = new_g.op("pack_panels", flat, nr=nr)
        return (new_g.op("conv2d_packed", x, packed[w], kernel=(kh, kw), n=o, strides=a["strides"],
                         dilations=a["dilations"], pads=a["pads"]),)

    old_users = g.users()

    def _pool_into_conv(new_g, n, ins):
        """max_pool2d(relu(conv(x) + b)) with non-overlapping windows is
        relu(maxpool(conv(x)) + b) -- adding a per-channel constant and relu are
        non-decreasing, so they commute with a max: the conv computes the pooled output
        (``conv2d_packed{pool}``; ``conv2d_winograd{pool}`` for 2x2 windows, one tile
        each) and its full-size output never exists. The unpooled
        chain built so far is left for dce."""
        a = n.attrs
        if tuple(a["window"]) != tuple(a["strides"]) or any(a["pads"]):
            return None
        chain, v, old = [], ins[0], n.inputs[0]
        while True:
            if len(old_users.get(old, [])) != 1:      # the unpooled value is needed elsewhere
                return None
            p, q = v.producer, old.producer
            if p is None or q is None:
                return None
            if p.op.name == "conv2d_packed" and not p.attrs["pool"]:
                break
            if p.op.name == "conv2d_winograd" and not p.attrs["pool"]:
                if tuple(a["window"]) != (2, 2):      # one tile per window only
                    return None
                break
            if p.op.name == "relu":
                chain.append(("relu", None))
                v, old = p.inputs[0], q.inputs[0]
                continue
            if p.op.name == "add":
                k = 0 if p.inputs[0].type.rank == 4 else 1     # the conv side; the bias is [O]
                bias = p.inputs[1 - k]
                if bias.type.rank != 1 or p.inputs[k].type.rank != 4:
                    return None                           # only a per-channel constant
                chain.append(("add", bias))
                v, old = p.inputs[k], q.inputs[k]
                continue
            return None
        conv = p
        out = new_g.op(conv.op.name, *conv.inputs, **{**conv.attrs.as_dict(), "pool": tuple(a["window"])})
        for kind, bias in reversed(chain):
            out = new_g.op("relu", out) if kind == "relu" else new_g.op("add", out, bias)
        return (out,)

    def _scan(new_g, n, ins):
        """A known loop-invariant weight that the body only multiplies by (as a matmul's
        right operand) is packed once, outside the loop; the body gets the panels."""
        a = n.attrs
        first_inv = a["num_carries"] + a["num_sequences"]
        (body,) = n.regions
        users = body.users()
        new_ins = list(ins)
        invariant = {body.inputs[j]: j for j in range(first_inv, len(ins))}
        cells = []
        for cell in (match_cells(body, users) if LSTM_CELL else []):
            jw, jb = invariant.get(cell.w), invariant.get(cell.bias)
            units = cell.w.type.shape[1] // 4
            if (jw is None or jb is None or not is_known(ins[jw]) or not is_known(ins[jb])
                    or not cell.w.type.is_static or units % (nr // 4)):
                continue
            order = interleave(4 * units, nr // 4)      # each panel: 4 gates of nr/4 units
            w = new_g.add_param(new_g.unique_param_name("lstm_kernel"),
                                np.ascontiguousarray(np.asarray(known_value(ins[jw]))[:, order]))
            new_ins[jw] = new_g.op("pack_panels", w, nr=nr)
            new_ins[jb] = new_g.add_param(new_g.unique_param_name("lstm_bias"),
                                          np.asarray(known_value(ins[jb]))[order])
            cells.append(cell)
        targets = []
        for j in range(first_inv, len(ins)):
            w, arg = ins[j], body.inputs[j]
            uses = users.get(arg, [])
            if new_ins[j] is ins[j] and (
                    is_known(w) and w.type.rank == 2 and w.type.is_static and w.dtype is DType.f32
                    and uses and all(u.op.name == "matmul" and u.inputs[1] is arg
                                     and u.inputs[0] is not arg for u in uses)):
                targets.append(j)
        if not targets and not cells:
            return None
        for j in targets:
            if ins[j] not in packed:
                packed[ins[j]] = new_g.op("pack_panels", ins[j], nr=nr)
            new_ins[j] = packed[ins[j]]
        retyped = {body.inputs[j]: new_ins[j].type for j in targets}
        retyped.update({c.w: new_ins[invariant[c.w]].type for c in cells})
        attrs = n.attrs
        project = _projectable(n, body, cells, ins) if LSTM_PROJECT else None
        if project is not None:   # the x part of the cell's GEMM for all steps, beforehand
            cell, j_seq, width = project
            xw, ok = new_g.op("lstm_project", ins[j_seq], new_ins[invariant[cell.w]],
                              n=cell.w.type.shape[1], x_width=width, max_rows=LSTM_PROJECT_MAX_ROWS)
            new_ins = [*new_ins[:first_inv], xw, *new_ins[first_inv:], ok]
            attrs = {**n.attrs.as_dict(), "num_sequences": a["num_sequences"] + 1}
        new_body = _pack_body(body, retyped, cells, nr, project, first_inv)
        nn = new_g.make_node(n.op, new_ins, attrs, (new_body,))
        new_g.nodes.append(nn)
        return nn.outputs

    return fuse_attention(g.rebuild(rewrite))


#: attention fuses up to this many keys (a block of score rows stays in cache: see
#: kernels_attention.SCORE_FLOATS)
MAX_ATTENTION_KEYS = 2048


def fuse_attention(g: Graph) -> Graph:
    """``matmul_packed(q, K) -> softmax(axis=-1) -> matmul_packed(p, V)`` (batched
    panels) -> ``attention_packed(q, K, V)``, or ``attention(q, k, v)`` when q, k and v
    come in the heads layout (``_heads_form``) -- then also with a mask between the
    scores and the softmax (``where(mask, scores, constant)``, Keras' attention and
    causal masks). Only when nothing else reads the scores or the probabilities (a
    training graph's backward pass reads them: it keeps the chain). The dead matmul,
    where and softmax are left to dce."""
    users = g.users()
    roots = set(g.roots()) | {v for _, v in g.updates}
    fused = {}                          # the second matmul -> (the first, mask, masked value)

    def only_use(v, node) -> bool:
        return v not in roots and users.get(v, []) == [node]

    for s in g.nodes:
        src = s.inputs[0].producer if s.op.name == "softmax" else None
        if src is None:
            continue
        mask, masked_value, reader = None, 0.0, s
        if src.op.name == "where":
            masked_value = _scalar_constant(src.inputs[2])
            if masked_value is None or not only_use(s.inputs[0], s):
                continue
            mask, reader = src.inputs[0], src
            src = src.inputs[1].producer
            if src is None:
                continue
        m1, t = src, src.outputs[0].type
        if (m1.op.name != "matmul_packed" or m1.attrs["transpose_a"] or m1.inputs[1].type.rank < 4
                or s.attrs["axis"] not in (-1, t.rank - 1) or t.dtype is not DType.f32
                or not only_use(m1.outputs[0], reader) or m1.attrs["n"] > MAX_ATTENTION_KEYS
                or not all(isinstance(d, int) for d in m1.inputs[0].type.shape[-2:])):
            continue
        (m2, *rest) = users.get(s.outputs[0], [None])
        if (rest or m2 is None or m2.op.name != "matmul_packed" or m2.inputs[0] is not s.outputs[0]
                or m2.attrs["transpose_a"] or m2.inputs[1].type.rank != m1.inputs[1].type.rank
                or s.outputs[0] in roots):
            continue
        fused[m2] = (m1, mask, masked_value)
    heads = {m2: _heads_form(m1, m2, users, roots, mask, mv) for m2, (m1, mask, mv) in fused.items()}
    fused = {m2: f for m2, f in fused.items() if f[1] is None or heads[m2] is not None}
    if not fused:
        return g
    after = {h[3]: m2 for m2, h in heads.items() if m2 in fused and h is not None and h[3] is not None}
    new_of = {}                                   # old value -> new value, filled by rebuild

    def rewrite(new_g, n, ins):
        m2 = n if n in fused else after.get(n)
        h = heads.get(m2)
        if m2 is None or (h is not None and n is m2 and h[3] is not None):
            return None     # any other node, or a matmul whose transpose takes the attention (dce drops it)
        if h is not None:                         # q, k, v in [B, tokens, heads, depth]
            q, k, v, t_after, scale = h
            _, mask, masked_value = fused[m2]
            operands = [new_of[x] for x in (q, k, v)] + ([new_of[mask]] if mask is not None else [])
            y = new_g.op("attention", *operands, scale=scale, masked_value=masked_value)
            return [y] if n is t_after else [new_g.op("transpose", y, perm=(0, 2, 1, 3))]
        m1 = fused[m2][0]
        q, kp = (new_of[x] for x in m1.inputs)
        return [new_g.op("attention_packed", q, kp, ins[1], n_s=m1.attrs["n"], n=n.attrs["n"])]

    return g.rebuild(rewrite, mapping=new_of)


def _producer(v, name):
    """The node of op ``name`` that made ``v``, else None."""
    p = v.producer
    return p if p is not None and p.op.name == name else None


def _scalar_constant(v):
    """The value of a scalar ``constant``, as a float, else None."""
    c = _producer(v, "constant")
    return None if c is None or np.ndim(c.attrs["value"]) != 0 else float(c.attrs["value"])


def _transposed(v):
    """The source of a 2-D ``transpose`` (perm 1, 0), else None."""
    p = _producer(v, "transpose")
    return p.inputs[0] if p is not None and tuple(p.attrs["perm"]) == (1, 0) else None


def _projectable(scan, body, cells, ins):
    """(cell, operand index of the sequence, x_width) when a cell's GEMM reads
    ``concat(x_t, h)`` with x_t the step of a time-major [T, N, x_width] sequence
    (an LSTM layer's inference body) -- its x part can be made for all steps at once
    (``lstm_project``) -- else None."""
    a = scan.attrs
    nc, ns = a["num_carries"], a["num_sequences"]
    if a["axis"] != 0:
        return None
    steps = {body.inputs[j]: j for j in range(nc, nc + ns)}
    for cell in cells:
        cat = cell.xh.producer
        if cat is None or cat.op.name != "concat" or len(cat.inputs) != 2 \
                or cat.attrs["axis"] not in (1, -1):
            continue
        x = cat.inputs[0]
        width = x.type.shape[-1]
        if x in steps and ins[steps[x]].type.rank == 3 and isinstance(width, int) \
                and isinstance(cell.xh.type.shape[1], int) and x is not cat.inputs[1]:
            return cell, steps[x], width
    return None


def _pack_body(body: Graph, packed_types: dict, cells=(), nr: int = 0, project=None,
               first_inv: int = 0) -> Graph:
    """``body`` with the given inputs retyped to panels and their matmuls packed, and
    each LSTM step of ``cells`` (kiln/passes/lstm_cell.py: its kernel and bias already
    interleaved and packed) one ``lstm_cell_packed`` -- ``project`` (``_projectable``)'s
    cell with two more inputs: a step of the projected sequence after the other
    sequences' steps (before body input ``first_inv``, the first invariant), and the
    projection's ``ok`` after the invariants."""
    out = Graph(body.name)
    env = {}
    extra = {}
    for i, v in enumerate(body.inputs):
        if project is not None and i == first_inv:
            cell = project[0]
            extra["xw"] = out.add_input(body.unique_param_name("xw_step"), TensorType(
                (cell.xh.type.shape[0], cell.w.type.shape[1]), cell.xh.type.dtype))
        env[v] = out.add_input(v.name, packed_types.get(v, v.type))
    if project is not None:
        extra["ok"] = out.add_input(body.unique_param_name("xw_ok"), TensorType((), DType.bool))
    replaced = {n: cell for cell in cells for n in cell.nodes}
    for n in body.nodes:
        if n in replaced:             # one op for the cell, where c' is made
            cell = replaced[n]
            if n is cell.c_node:
                more, kw = (), {}
                if project is not None and cell is project[0]:
                    more, kw = (extra["xw"], extra["ok"]), {"x_width": project[2]}
                h, c = out.op("lstm_cell_packed", *(env[v] for v in (cell.xh, cell.w, cell.bias, cell.c)),
                              *more, n=cell.w.type.shape[1], block=nr // 4, activation=cell.activation,
                              recurrent_activation=cell.recurrent_activation, **kw)
                env[cell.c_node.outputs[0]], env[cell.h_node.outputs[0]] = c, h
            continue
        ins = [env[v] for v in n.inputs]
        if n.op.name == "matmul" and n.inputs[1] in packed_types:
            nn = out.make_node("matmul_packed", ins, {"n": n.inputs[1].type.shape[1]})
        else:
            nn = out.make_node(n.op, ins, n.attrs, n.regions)
        out.nodes.append(nn)
        for o, no in zip(n.outputs, nn.outputs):
            env[o] = no
    out.set_outputs([env[v] for v in body.outputs])
    return out


#: the kernel packs a head's keys and values on its stack: at most this many floats each
#: (64 KB; longer sequences take attention_packed, whose packs are in memory)
MAX_HEAD_FLOATS = 1 << 14


def _heads_form(m1, m2, users, roots, mask=None, masked_value=0.0):
    """(q, k, v, transpose after, scale) when the attention reads q, k and v in the
    [B, tokens, heads, depth] layout -- q through ``transpose(0, 2, 1, 3)`` and an
    optional multiply by a scalar constant, k and v through packs with perms
    (0, 2, 3, 1) and (0, 2, 1, 3) -- else None. ``transpose after``: the output's
    transpose back to [B, M, H, Dv] when it is the only reader."""
    kp, vp = _producer(m1.inputs[1], "pack_panels"), _producer(m2.inputs[1], "pack_panels")
    if (kp is None or vp is None or tuple(kp.attrs["perm"]) != (0, 2, 3, 1)
            or tuple(vp.attrs["perm"]) != (0, 2, 1, 3)):
        return None
    q, scale = m1.inputs[0], 1.0
    mul = _producer(q, "mul")
    if mul is not None:
        q, scale = mul.inputs[0], _scalar_constant(mul.inputs[1])
        if scale is None:
            return None
    qt = _producer(q, "transpose")
    if qt is None or tuple(qt.attrs["perm"]) != (0, 2, 1, 3):
        return None
    q4, k4, v4 = qt.inputs[0], kp.inputs[0], vp.inputs[0]
    S, D, Dv = k4.type.shape[1], k4.type.shape[3], v4.type.shape[3]
    if any(t.type.dtype is not DType.f32 or t.type.rank != 4 for t in (q4, k4, v4)) \
            or S * D > MAX_HEAD_FLOATS or S * Dv > MAX_HEAD_FLOATS:
        return None
    try:        # shapes, and a mask that broadcasts to the scores
        get_op("attention").infer(q4.type, k4.type, v4.type, *([mask.type] if mask is not None else []),
                                  scale=scale, masked_value=masked_value)
    except OpTypeError:
        return None
    (t_after, *rest) = users.get(m2.outputs[0], [None])
    if (rest or t_after is None or t_after.op.name != "transpose" or m2.outputs[0] in roots
            or tuple(t_after.attrs["perm"]) != (0, 2, 1, 3)):
        t_after = None
    return q4, k4, v4, t_after, scale
