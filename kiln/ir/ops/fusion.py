"""``fusion``: a group of ops that codegen emits as ONE kernel.

The body is a region (a nested graph isolated from above): the node's operands bind
the region's inputs, and the region's outputs are the node's results. The fusion
pass (kiln/passes/fusion.py) creates these; the interpreter runs the body.
"""
from __future__ import annotations

from ..opdef import Kind, OpDef, OpTypeError, register


@register
class Fusion(OpDef):
    name = "fusion"
    kind = Kind.OPAQUE
    family = "fusion"
    num_regions = 1

    def infer(self, *types, regions):
        (body,) = regions
        want = [v.type for v in body.inputs]
        if list(types) != want:
            raise OpTypeError(f"fusion: operands {', '.join(map(str, types)) or 'none'} do not match "
                              f"the region's inputs {', '.join(map(str, want)) or 'none'}")
        if body.params:
            raise OpTypeError("fusion: a region takes values only through its inputs, "
                              f"not params ({', '.join(body.params)})")
        if not body.outputs:
            raise OpTypeError("fusion: the region yields nothing")
        return tuple(v.type for v in body.outputs)

    def reference(self, *arrays, regions):
        from ..interpreter import interpret
        out = interpret(regions[0], *arrays)
        return out if isinstance(out, tuple) else (out,)
