"""Kernel for ``random_uniform``: SplitMix64 over (seed, counter, element index).

The formula (and the numpy reference it must match bit for bit) is in
kiln/ir/ops/random.py. All arithmetic is i64 with wrap-around (no ``nsw``/``nuw``
flags: overflow is the point); shifts are logical.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.ops.random import GOLDEN, MIX1, MIX2
from .emit import I64, LLTYPE
from .kernels import kernel, kernel_context


def _u64(v: int) -> ll.Constant:
    v %= 2**64
    return I64(v - 2**64 if v >= 2**63 else v)   # the same bits as a signed i64 constant


def _mix(b: ll.IRBuilder, z):
    z = b.mul(b.xor(z, b.lshr(z, I64(30))), _u64(MIX1))
    z = b.mul(b.xor(z, b.lshr(z, I64(27))), _u64(MIX2))
    return b.xor(z, b.lshr(z, I64(31)))


@kernel("random_uniform")
def emit_random_uniform(module, name, node, symbols):
    kc = kernel_context(module, name, node, symbols)
    b = kc.b
    out_t = node.outputs[0].type
    dt = out_t.dtype
    out_ptr, counter_ptr = kc.args
    counter = b.load(counter_ptr, align=8)
    seed = node.attrs["seed"]
    key = _mix(b, b.add(_u64(seed), b.mul(b.add(counter, I64(1)), _u64(GOLDEN))))
    scale = ll.Constant(LLTYPE[dt], 2.0 ** -24)
    with kc.loop(kc.numel(out_t.shape), name="i") as i:
        z = _mix(b, b.add(key, b.mul(b.add(i, I64(1)), _u64(GOLDEN))))
        bits = b.lshr(z, I64(40))
        kc.store(b.fmul(b.uitofp(bits, LLTYPE[dt]), scale), out_ptr, i, dt)
    return kc.finish()
