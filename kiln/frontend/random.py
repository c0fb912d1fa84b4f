"""The frontend's random state: one module-level numpy Generator.

Weight initializers draw from it. ``kiln.utils.set_random_seed(s)`` reseeds it (and
Python's ``random`` and numpy's legacy global state, as Keras does), which makes
initialization reproducible; unseeded, it is seeded from OS entropy.
"""
from __future__ import annotations

import random as _pyrandom

import numpy as np

_generator: np.random.Generator = np.random.default_rng()


def generator() -> np.random.Generator:
    """The Generator initializers draw from (replaced by ``set_random_seed``)."""
    return _generator


def set_random_seed(seed: int) -> None:
    """Seed every random number generator kiln's frontend uses."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed expects a non-negative integer seed, got {seed!r}")
    seed = int(seed)
    _generator = np.random.default_rng(seed)
    _pyrandom.seed(seed)
    np.random.seed(seed % 2**32)


# -- random numbers inside graphs (dropout masks) -----------------------------------------
# A training graph draws from the counter-based ``random_uniform`` op
# (kiln/ir/ops/random.py). The graph carries ONE counter, ``%rng.counter: i64[]``, a
# state parameter it advances by one per run; every draw has its own ``seed``
# attribute (a layer's seed, fixed when the layer is made). Same seeds and counter:
# same numbers, bit for bit.

import weakref  # noqa: E402

COUNTER = "rng.counter"
_SEED_LIMIT = 2**63
_draws: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # graph -> {seed: uses}


def draw_seed() -> int:
    """A fresh seed in [0, 2**63) from the frontend generator (reproducible after
    ``set_random_seed``): what a layer made with ``seed=None`` uses."""
    return int(_generator.integers(0, _SEED_LIMIT))


def counter(graph):
    """The graph's RNG counter param (added, with its ``+1`` update, on first use)."""
    from ..ir.types import DType, TensorType
    p = graph.params.get(COUNTER)
    if p is None:
        p = graph.add_param(COUNTER, np.array(0, np.int64))
        with graph.building():
            nxt = graph.op("add", p, graph.constant(1, DType.i64))
        graph.add_update(p, nxt)
        assert p.type == TensorType((), DType.i64)
    return p


def uniform(shape, seed: int, graph=None):
    """Uniform f32 in [0, 1) of ``shape`` (IR dims: ints and symbols such as ``N``)
    in the graph being built. A seed drawn again in the same graph is salted, so a
    layer called twice gets two different masks."""
    from ..ir.graph import current_graph
    from ..ir.ops.random import GOLDEN
    g = graph if graph is not None else current_graph()
    uses = _draws.setdefault(g, {})
    k = uses.get(seed, 0)
    uses[seed] = k + 1
    s = (int(seed) + k * GOLDEN) % _SEED_LIMIT
    return g.op("random_uniform", counter(g), shape=tuple(shape), seed=s)


def dropout(x, rate: float, noise_shape=None, seed: int = 0):
    """Inverted dropout of the IR value ``x`` (Keras semantics): keep an element when
    its uniform draw is >= ``rate`` and scale survivors by ``1 / (1 - rate)``.
    ``noise_shape`` (None entries take x's dimension) shapes the mask, which
    broadcasts against ``x``."""
    from ..ir.graph import current_graph
    g = current_graph()
    if noise_shape is None:
        shape = x.type.shape
    else:
        noise_shape = tuple(noise_shape)
        if len(noise_shape) != x.type.rank:
            raise ValueError(f"Dropout: noise_shape {noise_shape} must have the rank of the "
                             f"inputs {x.type}")
        shape = tuple(x.type.shape[i] if d is None else d for i, d in enumerate(noise_shape))
    u = uniform(shape, seed, g)
    keep = g.op("greater_equal", u, g.constant(rate, u.dtype))
    inv_keep = np.float32(1.0) / (np.float32(1.0) - np.float32(rate))   # in f32, as Keras
    scale = g.op("where", keep, g.constant(inv_keep, u.dtype), g.constant(0.0, u.dtype))
    if scale.dtype is not x.dtype:
        scale = g.op("cast", scale, dtype=x.dtype)
    return g.op("mul", x, scale)
