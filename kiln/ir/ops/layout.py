"""Layout ops: weights in the panel layout of the GEMM microkernel.

``pack_panels{nr}`` turns a [K, P] matrix into ceil(P/nr) panels of [K, nr] (the last
zero-padded): the microkernel reads one row of a panel (nr contiguous floats) per
step of k. The layout pass inserts it on constant weights, where constant folding
runs it once at compile time; ``matmul_packed{n}`` multiplies by a packed matrix.
"""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, register
from ..types import TensorType


def unpack_panels(bp: np.ndarray, n: int) -> np.ndarray:
    npanels, k, nr = bp.shape
    return bp.transpose(1, 0, 2).reshape(k, npanels * nr)[:, :n]


@register
class PackPanels(OpDef):
    name = "pack_panels"
    kind = Kind.INJECTIVE
    family = "pack_panels"
    num_inputs = 1
    attrs = (Attr("nr", AttrKind.INT),)

    def infer(self, x: TensorType, *, nr):
        if x.rank != 2 or not x.is_static:
            raise OpTypeError(f"pack_panels: expects a static matrix [K,P], got {x}")
        if nr < 1:
            raise OpTypeError(f"pack_panels: nr must be >= 1, got {nr}")
        k, p = x.shape
        return TensorType((-(-p // nr), k, nr), x.dtype)

    def reference(self, x, *, nr):
        k, p = x.shape
        npanels = -(-p // nr)
        padded = np.zeros((k, npanels * nr), x.dtype)
        padded[:, :p] = x
        return np.ascontiguousarray(padded.reshape(k, npanels, nr).transpose(1, 0, 2))


@register
class MatMulPacked(OpDef):
    """[..., M, K] @ B -> [..., M, n] where ``bp`` is B packed by ``pack_panels``."""
    name = "matmul_packed"
    kind = Kind.OUT_FUSABLE
    family = "matmul_packed"
    num_inputs = 2
    attrs = (Attr("n", AttrKind.INT),)

    def infer(self, a: TensorType, bp: TensorType, *, n):
        if a.dtype != bp.dtype or not a.dtype.is_float:
            raise OpTypeError(f"matmul_packed: expects floating operands of one dtype, got {a}, {bp}")
        if a.rank < 2 or bp.rank != 3:
            raise OpTypeError(f"matmul_packed: expects [..., M, K] and panels [P/nr, K, nr], "
                              f"got {a}, {bp}")
        npanels, k, nr = bp.shape
        if a.shape[-1] != k:
            raise OpTypeError(f"matmul_packed: inner dimensions differ: {a} @ {bp}")
        if not (npanels - 1) * nr < n <= npanels * nr:
            raise OpTypeError(f"matmul_packed: n={n} does not fit {npanels} panels of {nr}")
        return TensorType(a.shape[:-1] + (n,), a.dtype)

    def reference(self, a, bp, *, n):
        return np.matmul(a, unpack_panels(bp, n))
