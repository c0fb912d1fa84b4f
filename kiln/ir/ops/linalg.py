"""Matrix multiplication."""
from __future__ import annotations

import numpy as np

from ..opdef import Kind, OpDef, OpTypeError, broadcast_shapes, register, same_dtype
from ..types import TensorType
from .vjp_util import unbroadcast


@register
class MatMul(OpDef):
    """numpy matmul semantics for rank >= 2: [..., M, K] @ [..., K, P] -> [..., M, P],
    leading (batch) dimensions broadcast."""
    name = "matmul"
    kind = Kind.OUT_FUSABLE
    family = "matmul"
    num_inputs = 2

    def infer(self, a: TensorType, b: TensorType):
        dt = same_dtype(self.name, a, b)
        if not dt.is_float:
            raise OpTypeError(f"matmul: expects floating-point operands, got {a}, {b}")
        if a.rank < 2 or b.rank < 2:
            raise OpTypeError(f"matmul: expects operands of rank >= 2, got {a}, {b}")
        if a.shape[-1] != b.shape[-2]:
            raise OpTypeError(f"matmul: inner dimensions differ: {a} @ {b} "
                              f"({a.shape[-1]} vs {b.shape[-2]})")
        batch = broadcast_shapes(self.name, TensorType(a.shape[:-2], dt), TensorType(b.shape[:-2], dt))
        return TensorType(batch + (a.shape[-2], b.shape[-1]), dt)

    def reference(self, a, b):
        return np.matmul(a, b)

    def vjp(self, g, ins, outs, cts):
        # dA = C' @ B^T, dB = A^T @ C', each summed over the batch dims it was broadcast along
        a, b = ins
        ct = cts[0]

        def t(v):
            perm = tuple(range(v.type.rank - 2)) + (v.type.rank - 1, v.type.rank - 2)
            return g.op("transpose", v, perm=perm)

        return [unbroadcast(g, g.op("matmul", ct, t(b)), a.type.shape),
                unbroadcast(g, g.op("matmul", t(a), ct), b.type.shape)]
