"""Constants: a tensor value held in the node's attribute."""
from __future__ import annotations

from ..opdef import Attr, AttrKind, Kind, OpDef, register
from ..types import DType, TensorType


@register
class Constant(OpDef):
    name = "constant"
    kind = Kind.OPAQUE
    family = "constant"
    num_inputs = 0
    attrs = (Attr("value", AttrKind.TENSOR),)

    def infer(self, *, value):
        return TensorType(value.shape, DType.from_numpy(value.dtype))

    def reference(self, *, value):
        return value.copy()

    def vjp(self, g, ins, outs, cts, *, value):
        return []   # no operands
