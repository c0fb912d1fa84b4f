"""Layout ops: weights in the panel layout of the GEMM microkernel.

``pack_panels{nr}`` turns a [K, P] matrix into ceil(P/nr) panels of [K, nr] (the last
zero-padded): the microkernel reads one row of a panel (nr contiguous floats) per
step of k. The layout pass inserts it on constant weights, where constant folding
runs it once at compile time, and on values known only at run time (weights being
trained, gradients), where it runs once per call; ``matmul_packed{n}`` multiplies by
a packed matrix. ``pack_panels{perm}`` packs ``transpose(x, perm)`` straight from
``x`` (a 2-D transpose, or attention's key transpose [B,S,H,D] -> [B,H,D,S]), and
``matmul_packed{transpose_a=true}`` reads its left operand [K, M] transposed -- so
the ``x^T @ dy`` and ``dy @ W^T`` of a backward pass never materialize a transpose.
K may be symbolic (the batch axis of ``x^T @ dy``); P is static. Leading dims are
batch dims: [..., K, P] packs to [..., ceil(P/nr), K, nr], one set of panels per
batch element, and ``matmul_packed`` of an [..., M, K] operand with the same batch
dims multiplies batch by batch (attention's ``q @ k^T`` and ``p @ v``).
"""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, get_op, register
from ..types import DType, TensorType


def unpack_panels(bp: np.ndarray, n: int) -> np.ndarray:
    npanels, k, nr = bp.shape
    return bp.transpose(1, 0, 2).reshape(k, npanels * nr)[:, :n]


@register
class PackPanels(OpDef):
    name = "pack_panels"
    kind = Kind.INJECTIVE
    family = "pack_panels"
    num_inputs = 1
    attrs = (Attr("nr", AttrKind.INT), Attr("perm", AttrKind.INTS, ()))

    def infer(self, x: TensorType, *, nr, perm):
        if perm and sorted(perm) != list(range(x.rank)):
            raise OpTypeError(f"pack_panels: perm {list(perm)} is not a permutation of "
                              f"0..{x.rank - 1} for {x}")
        shape = tuple(x.shape[i] for i in perm) if perm else x.shape
        if x.rank < 2 or not isinstance(shape[-1], int):
            want = f"[..., K, P] after perm {list(perm)}" if perm else "[..., K, P]"
            raise OpTypeError(f"pack_panels: expects a matrix {want} with a static P, got {x}")
        if nr < 1:
            raise OpTypeError(f"pack_panels: nr must be >= 1, got {nr}")
        *batch, k, p = shape
        return TensorType((*batch, -(-p // nr), k, nr), x.dtype)

    def reference(self, x, *, nr, perm):
        if perm:
            x = np.transpose(x, perm)
        if x.ndim > 2:
            return np.stack([self.reference(m, nr=nr, perm=()) for m in x.reshape(-1, *x.shape[-2:])]
                            ).reshape(*x.shape[:-2], -(-x.shape[-1] // nr), x.shape[-2], nr)
        k, p = x.shape
        npanels = -(-p // nr)
        padded = np.zeros((k, npanels * nr), x.dtype)
        padded[:, :p] = x
        return np.ascontiguousarray(padded.reshape(k, npanels, nr).transpose(1, 0, 2))


@register
class MatMulPacked(OpDef):
    """[..., M, K] @ B -> [..., M, n] where ``bp`` is B packed by ``pack_panels``:
    one matrix [np, K, nr] for every row of ``a``, or batched panels [..., np, K, nr]
    with ``a``'s batch dims; ``transpose_a``: ``a`` is [K, M] and A is its transpose
    (rank 2 only)."""
    name = "matmul_packed"
    kind = Kind.OUT_FUSABLE
    family = "matmul_packed"
    num_inputs = 2
    attrs = (Attr("n", AttrKind.INT), Attr("transpose_a", AttrKind.BOOL, False))

    def infer(self, a: TensorType, bp: TensorType, *, n, transpose_a):
        if a.dtype != bp.dtype or not a.dtype.is_float:
            raise OpTypeError(f"matmul_packed: expects floating operands of one dtype, got {a}, {bp}")
        batched = bp.rank > 3
        if (a.rank < 2 or bp.rank < 3 or (transpose_a and (a.rank != 2 or batched))
                or (batched and (a.rank != bp.rank - 1 or a.shape[:-2] != bp.shape[:-3]))):
            want = ("[K, M] (transpose_a)" if transpose_a else
                    "[..., M, K] with the panels' batch dims" if batched else "[..., M, K]")
            raise OpTypeError(f"matmul_packed: expects {want} and panels [..., P/nr, K, nr], "
                              f"got {a}, {bp}")
        npanels, k, nr = bp.shape[-3:]
        rows, inner = (a.shape[1:], a.shape[0]) if transpose_a else (a.shape[:-1], a.shape[-1])
        if inner != k:
            raise OpTypeError(f"matmul_packed: inner dimensions differ: {a} @ {bp}")
        if not (npanels - 1) * nr < n <= npanels * nr:
            raise OpTypeError(f"matmul_packed: n={n} does not fit {npanels} panels of {nr}")
        return TensorType(rows + (n,), a.dtype)

    def reference(self, a, bp, *, n, transpose_a):
        if bp.ndim > 3:
            b = np.stack([unpack_panels(m, n) for m in bp.reshape(-1, *bp.shape[-3:])])
            return np.matmul(a, b.reshape(*bp.shape[:-3], *b.shape[-2:]))
        return np.matmul(a.T if transpose_a else a, unpack_panels(bp, n))


@register
class Conv2DPacked(OpDef):
    """conv2d (groups=1) whose kernel [kh,kw,C,O] was reshaped to [kh*kw*C, O] and
    packed by ``pack_panels``: an implicit GEMM -- rows are output pixels, the k axis
    runs over (i, j, c) of the window, read straight from the input (padding reads 0;
    nothing is materialized). ``pool=[ph, pw]``: then max pooling over non-overlapping
    ph x pw windows (stride = window, no padding, a partial last window dropped) --
    the conv's full-size output never exists."""
    name = "conv2d_packed"
    kind = Kind.OUT_FUSABLE
    family = "conv2d_packed"
    num_inputs = 2
    attrs = (Attr("kernel", AttrKind.INTS), Attr("n", AttrKind.INT),
             Attr("strides", AttrKind.INTS, (1, 1)), Attr("dilations", AttrKind.INTS, (1, 1)),
             Attr("pads", AttrKind.INTS, (0, 0, 0, 0)), Attr("pool", AttrKind.INTS, ()))

    @staticmethod
    def _conv():
        return get_op("conv2d")   # shapes and reference: exactly conv2d's

    def infer(self, x: TensorType, wp: TensorType, *, kernel, n, strides, dilations, pads, pool):
        t = self._infer_conv(x, wp, kernel=kernel, n=n, strides=strides, dilations=dilations,
                             pads=pads)
        if not pool:
            return t
        if len(pool) != 2 or min(pool) < 1:
            raise OpTypeError(f"conv2d_packed: pool must be [ph, pw] >= 1, got {list(pool)}")
        return get_op("max_pool2d").infer(t, window=tuple(pool), strides=tuple(pool), pads=(0, 0, 0, 0))

    def _infer_conv(self, x: TensorType, wp: TensorType, *, kernel, n, strides, dilations, pads):
        if wp.rank != 3 or x.rank != 4:
            raise OpTypeError(f"conv2d_packed: expects NHWC input and packed panels, got {x}, {wp}")
        npanels, k, nr = wp.shape
        if len(kernel) != 2 or kernel[0] * kernel[1] * x.shape[3] != k:
            raise OpTypeError(f"conv2d_packed: kernel {list(kernel)} x {x.shape[3]} channels does "
                              f"not match the panels' depth {k}")
        if not (npanels - 1) * nr < n <= npanels * nr:
            raise OpTypeError(f"conv2d_packed: n={n} does not fit {npanels} panels of {nr}")
        w = TensorType((kernel[0], kernel[1], x.shape[3], n), x.dtype)
        return self._conv().infer(x, w, strides=strides, dilations=dilations, pads=pads, groups=1)

    def reference(self, x, wp, *, kernel, n, strides, dilations, pads, pool):
        w = unpack_panels(wp, n).reshape(kernel[0], kernel[1], x.shape[3], n)
        y = self._conv().reference(x, w, strides=strides, dilations=dilations, pads=pads, groups=1)
        if pool:
            y = get_op("max_pool2d").reference(y, window=tuple(pool), strides=tuple(pool),
                                               pads=(0, 0, 0, 0))
        return y


@register
class AttentionPacked(OpDef):
    """``softmax(q @ K, axis=-1) @ V`` batch by batch, with K and V packed by
    ``pack_panels``: q [..., M, D], kp [..., P/nr, D, nr] (K is [D, n_s]: the keys
    transposed), vp [..., P/nr, n_s, nr] (V is [n_s, n]) -> [..., M, n]. The layout
    pass makes it of ``matmul_packed -> softmax -> matmul_packed`` when nothing else
    reads the scores or the probabilities (inference): the kernel computes a block of
    rows of the scores, their softmax and their product with V while the block is in
    cache, so the [..., M, n_s] scores are never written out."""
    name = "attention_packed"
    kind = Kind.OPAQUE
    family = "attention_packed"
    num_inputs = 3
    attrs = (Attr("n_s", AttrKind.INT), Attr("n", AttrKind.INT))

    def infer(self, q: TensorType, kp: TensorType, vp: TensorType, *, n_s, n):
        mm = get_op("matmul_packed")
        if kp.rank < 4 or vp.rank != kp.rank:
            raise OpTypeError(f"attention_packed: expects batched panels [..., P/nr, K, nr] for "
                              f"keys and values, got {kp}, {vp}")
        scores = mm.infer(q, kp, n=n_s, transpose_a=False)
        return mm.infer(scores, vp, n=n, transpose_a=False)

    def reference(self, q, kp, vp, *, n_s, n):
        mm, sm = get_op("matmul_packed"), get_op("softmax")
        p = sm.reference(mm.reference(q, kp, n=n_s, transpose_a=False), axis=-1)
        return mm.reference(p, vp, n=n, transpose_a=False)


@register
class Attention(OpDef):
    """Multi-head attention on the [batch, tokens, heads, depth] tensors the projections
    make (Keras' MultiHeadAttention before and after its head transposes): q [B, M, H, D],
    k [B, S, H, D], v [B, S, H, Dv], optionally a bool ``mask`` broadcastable to the
    scores [B, H, M, S] ->

        scores[b, h, m, s] = scale * q[b, m, h] . k[b, s, h]   (masked_value where mask is 0)
        out[b, m, h] = sum_s softmax_s(scores[b, h, m]) * v[b, s, h]

    of shape [B, M, H, Dv]. The layout pass makes it of the head transposes, the scale,
    the mask's ``where``, the packs and the matmul -> softmax -> matmul chain (no
    transposed copy of q or of the output, no packed copy of k or v, no scores in
    memory: the kernel packs each head's keys and values into its own buffers)."""
    name = "attention"
    kind = Kind.OPAQUE
    family = "attention"
    num_inputs = None       # q, k, v and an optional mask
    attrs = (Attr("scale", AttrKind.FLOAT, 1.0), Attr("masked_value", AttrKind.FLOAT, 0.0))

    def infer(self, q: TensorType, k: TensorType, v: TensorType, *mask, scale, masked_value):
        if (q.rank != 4 or k.rank != 4 or v.rank != 4 or q.dtype != k.dtype or q.dtype != v.dtype
                or not q.dtype.is_float or k.shape[3] != q.shape[3] or k.shape[1] != v.shape[1]
                or k.shape[:3:2] != v.shape[:3:2]
                or q.shape[0:3:2] != k.shape[0:3:2] or len(mask) > 1
                or not all(isinstance(d, int) for t in (q, k, v) for d in t.shape[1:])):
            raise OpTypeError(f"attention: expects q [B, M, H, D], k [B, S, H, D], v [B, S, H, Dv] "
                              f"(floating, one dtype, static but B) and an optional mask, got "
                              f"{', '.join(str(t) for t in (q, k, v, *mask))}")
        if mask:
            m, scores = mask[0], (q.shape[0], q.shape[2], q.shape[1], k.shape[1])
            ok = m.dtype is DType.bool and m.rank <= 4 and all(
                d == 1 or d == want for d, want in zip(m.shape[::-1], scores[::-1]))
            if not ok or not all(isinstance(d, int) for d in m.shape[1:]):
                raise OpTypeError(f"attention: the mask must be bool and broadcast to the scores "
                                  f"{list(scores)} (static but its first axis), got {m}")
        return TensorType((q.shape[0], q.shape[1], q.shape[2], v.shape[3]), q.dtype)

    def reference(self, q, k, v, *mask, scale, masked_value):
        s = scale * np.einsum("bmhd,bshd->bhms", q, k)
        if mask:
            s = np.where(mask[0], s, np.asarray(masked_value, s.dtype))
        e = np.exp(s - s.max(-1, keepdims=True))
        return np.einsum("bhms,bshe->bmhe", e / e.sum(-1, keepdims=True), v).astype(q.dtype)
