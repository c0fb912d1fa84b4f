"""Shape ops: reshape and transpose."""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, register
from ..types import Affine, TensorType


@register
class Reshape(OpDef):
    """Row-major reshape. ``shape`` may hold symbols and one -1, which is inferred:
    ``f32[N,28,28] -> [N,-1]`` gives ``f32[N,784]``."""
    name = "reshape"
    kind = Kind.INJECTIVE
    family = "reshape"
    num_inputs = 1
    attrs = (Attr("shape", AttrKind.SHAPE),)

    def infer(self, x: TensorType, *, shape):
        if list(shape).count(-1) > 1:
            raise OpTypeError(f"reshape: at most one -1 in shape {list(shape)}")
        src = Affine.product(x.shape)
        known = Affine.product([d for d in shape if d != -1])
        bad = OpTypeError(f"reshape: cannot reshape {x} to [{','.join(map(str, shape))}]")
        if -1 in shape:
            syms = list(src.syms)
            for s in known.syms:
                if s not in syms:
                    raise bad
                syms.remove(s)
            if len(syms) == 1 and src.coeff == known.coeff:
                fill = syms[0]          # [N,7,33] -> [-1,7,33]: -1 stands for N
            elif syms:
                raise OpTypeError(f"{bad} (-1 would stand for "
                                  f"{'*'.join([str(src.coeff // max(known.coeff, 1)), *syms])}; "
                                  f"a dimension is an int or one symbol)")
            elif known.coeff == 0 or src.coeff % known.coeff:
                raise bad
            else:
                fill = src.coeff // known.coeff
            shape = tuple(fill if d == -1 else d for d in shape)
        elif Affine.product(shape) != src:
            raise bad
        return TensorType(shape, x.dtype)

    def reference(self, x, *, shape):
        return x.reshape(shape)

    def vjp(self, g, ins, outs, cts, *, shape):
        return [g.op("reshape", cts[0], shape=ins[0].type.shape)]


@register
class Transpose(OpDef):
    name = "transpose"
    kind = Kind.INJECTIVE
    family = "transpose"
    num_inputs = 1
    attrs = (Attr("perm", AttrKind.INTS),)

    def infer(self, x: TensorType, *, perm):
        if sorted(perm) != list(range(x.rank)):
            raise OpTypeError(f"transpose: perm {list(perm)} is not a permutation of "
                              f"0..{x.rank - 1} for {x}")
        return TensorType(tuple(x.shape[p] for p in perm), x.dtype)

    def reference(self, x, *, perm):
        return np.transpose(x, perm)

    def vjp(self, g, ins, outs, cts, *, perm):
        return [g.op("transpose", cts[0], perm=tuple(int(i) for i in np.argsort(perm)))]
