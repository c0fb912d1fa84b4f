"""Counter-based random numbers: ``random_uniform``.

Stateless and counter-based (as JAX's threefry or TensorFlow's stateless ops): the
value of every element is a pure function of (seed, counter, element index), so a
graph is deterministic given its inputs and parameters. Training graphs carry the
counter as a state parameter (``%rng.counter: i64[]``) that the graph itself
advances by one per run (kiln/frontend/random.py), so each step draws fresh numbers
and two runs from the same seed are bit-identical.

The generator is SplitMix64 (Steele, Lea and Flood, 2014), used twice: a per-run key
from (seed, counter), then one output per element index. With ``mix`` the
SplitMix64 finalizer and ``G = 0x9E3779B97F4A7C15`` (all arithmetic mod 2**64)::

    key  = mix(seed + G * (counter + 1))
    z[i] = mix(key + G * (i + 1))                # i: row-major element index
    u[i] = (z[i] >> 40) * 2**-24                 # 24 random bits: exact in f32, in [0, 1)

    mix(z): z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB
            z =  z ^ (z >> 31)

The numpy reference below and the LLVM kernel (kiln/codegen/llvm/kernels_random.py)
compute exactly this, so they agree bit for bit.
"""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, register
from ..types import DType, TensorType

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def mix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def uniform_bits(seed: int, counter: int, n: int) -> np.ndarray:
    """The 24-bit integers behind ``n`` uniforms (uint64, values < 2**24)."""
    with np.errstate(over="ignore"):
        key = mix64(np.array([(seed + GOLDEN * (counter + 1)) % 2**64], np.uint64))[0]
        idx = np.arange(1, n + 1, dtype=np.uint64)
        z = mix64(key + np.uint64(GOLDEN) * idx)
    return z >> np.uint64(40)


@register
class RandomUniform(OpDef):
    """Uniform floats in [0, 1) of type ``f32[shape]`` (``shape`` may hold symbols,
    e.g. ``[N,128]``) from the i64 scalar ``counter`` and the ``seed`` attribute.
    Not differentiable (no operand is a float)."""
    name = "random_uniform"
    kind = Kind.OPAQUE
    family = "random_uniform"
    num_inputs = 1
    attrs = (Attr("shape", AttrKind.SHAPE), Attr("seed", AttrKind.INT),
             Attr("dtype", AttrKind.DTYPE, DType.f32))
    differentiable = False

    def infer(self, counter: TensorType, *, shape, seed, dtype):
        if counter.dtype is not DType.i64 or counter.rank != 0:
            raise OpTypeError(f"random_uniform: the counter must be an i64 scalar (i64[]), "
                              f"got {counter}")
        if -1 in shape:
            raise OpTypeError(f"random_uniform: shape must be fully given (no -1), got "
                              f"{list(shape)}")
        if not dtype.is_float:
            raise OpTypeError(f"random_uniform: dtype must be floating point, got {dtype}")
        if not 0 <= seed < 2**63:
            raise OpTypeError(f"random_uniform: seed must be in [0, 2**63), got {seed}")
        return TensorType(shape, dtype)

    def reference(self, counter, *, shape, seed, dtype):
        n = int(np.prod(shape, dtype=np.int64))
        bits = uniform_bits(seed, int(counter), n)
        u = bits.astype(np.float64) * 2.0 ** -24
        return u.astype(dtype.np).reshape(shape)

    def vjp(self, g, inputs, outputs, cotangents, **attrs):
        return [None]
