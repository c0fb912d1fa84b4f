"""Differential tests: the interpreter agrees on a graph before and after the passes,
on random inputs, for hand-written models and for randomly generated graphs."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, OpTypeError, TensorType, verify
from kiln.passes import PassManager

PIPELINES = [["constfold"], ["dce"], ["constfold", "dce"], ["dce", "constfold", "dce"], ["fusion"],
             ["constfold", "dce", "fusion"]]


def assert_same(before: Graph, after: Graph, rng, batches=(1, 5)):
    for n in batches:
        xs = [rng.standard_normal(tuple(n if d == "N" else d for d in v.type.shape)).astype(v.type.dtype.np)
              for v in before.inputs]
        # params the graph holds no value for are given at run time (and must not have folded)
        given = {k: rng.standard_normal(v.type.shape).astype(v.type.dtype.np)
                 for k, v in before.params.items() if k not in before.param_values}
        a, b = kiln.interpret(before, *xs, params=given), kiln.interpret(after, *xs, params=given)
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        assert len(a) == len(b)
        for u, w in zip(a, b):
            assert u.dtype == w.dtype and u.shape == w.shape
            np.testing.assert_allclose(w, u, rtol=1e-6, atol=1e-6)


def mlp(rng):
    g = Graph("mlp")
    x = g.add_input("x", TensorType(("N", 8)))
    w1 = g.add_param("d1.kernel", rng.standard_normal((8, 16)).astype(np.float32))
    b1 = g.add_param("d1.bias", rng.standard_normal(16).astype(np.float32))
    w2 = g.add_param("d2.kernel", rng.standard_normal((16, 4)).astype(np.float32))
    g.add_param("unused", np.zeros(3, np.float32))
    # weight preprocessing that folds at compile time: scale, transpose twice, normalize the bias
    s = g.constant(0.5)
    w1s = g.op("transpose", g.op("transpose", g.op("mul", w1, s), perm=[1, 0]), perm=[1, 0])
    bn = g.op("div", b1, g.op("sqrt", g.op("add", g.op("reduce_sum", g.op("mul", b1, b1), axes=[0]),
                                           g.constant(1.0))))
    h = g.op("tanh", g.op("add", g.op("matmul", x, w1s), bn))
    g.op("exp", h)  # dead
    logits = g.op("matmul", h, w2)
    g.set_outputs([g.op("softmax", logits), g.op("reshape", w2, shape=[-1])])
    return g


@pytest.mark.parametrize("passes", PIPELINES, ids=lambda p: "+".join(p))
def test_mlp(passes):
    rng = np.random.default_rng(0)
    g = mlp(rng)
    out = PassManager(passes).run(g)
    assert_same(g, out, rng)
    if passes[-1] == "dce":
        assert "unused" not in out.params and "exp" not in str(out)
    if "constfold" in passes and passes[-1] == "dce":
        assert not {"transpose", "sqrt", "reduce_sum"} & {n.op.name for n in out.nodes}
        # w1 * 0.5 and its two transposes folded into one new param (dead steps dropped);
        # the reshaped kernel is an output, so it became a param too; the bias became a constant
        assert set(out.params) == {"d2.kernel", "fold.2", "fold.3"}


# -- random graphs ----------------------------------------------------------------------------------
UNARY = ["neg", "relu", "sigmoid", "tanh", "exp"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


def random_graph(seed: int) -> Graph:
    """Draw ops over a pool of values (an input with a batch dim, params with values,
    constants), keeping whatever type-checks; tanh/sigmoid keep magnitudes tame."""
    rng = np.random.default_rng(seed)
    g = Graph(f"rand{seed}")
    pool = [g.add_input("x", TensorType(("N", 4))), g.add_input("y", TensorType((4,)))]
    for i, shape in enumerate([(4,), (4, 4), (1, 4), (2, 4), ()]):
        pool.append(g.add_param(f"p{i}", rng.uniform(-1, 1, shape).astype(np.float32)))
    g.add_param("nothing", type=TensorType((4,)))   # no value: must never fold
    pool.append(g.op("sigmoid", g.params["nothing"]))
    for shape in [(4,), (), (4, 4)]:
        pool.append(g.constant(rng.uniform(-1, 1, shape)))
    for _ in range(30):
        kind = rng.integers(0, 6)
        a = pool[rng.integers(len(pool))]
        b = pool[rng.integers(len(pool))]
        try:
            if kind == 0:
                name = UNARY[rng.integers(len(UNARY))]
                v = g.op(name, g.op("tanh", a) if name == "exp" else a)
            elif kind == 1:
                v = g.op(BINARY[rng.integers(len(BINARY))], a, b)
            elif kind == 2:
                v = g.op("tanh", g.op("matmul", a, b))
            elif kind == 3 and a.type.rank:
                v = g.op(["reduce_sum", "reduce_mean", "reduce_max"][rng.integers(3)], a,
                         axes=[int(rng.integers(a.type.rank))], keepdims=bool(rng.integers(2)))
            elif kind == 4 and a.type.rank:
                v = g.op("softmax", a, axis=int(rng.integers(a.type.rank)))
            elif kind == 5 and a.type.rank == 2:
                v = g.op("transpose", a, perm=[1, 0])
            else:
                continue
        except OpTypeError:
            continue
        pool.append(v)
    outs = [pool[i] for i in rng.choice(len(pool), size=3, replace=False)]
    g.set_outputs(outs + [pool[-1]])
    return verify(g)


@pytest.mark.parametrize("seed", range(25))
def test_random_graphs(seed):
    g = random_graph(seed)
    rng = np.random.default_rng(100 + seed)
    for passes in PIPELINES:
        out = PassManager(passes).run(g)
        assert_same(g, out, rng)
    out = PassManager("inference").run(g)
    # after folding, nothing whose operands are all known is left (except constants)
    known = {v for v in out.params.values() if v.name in out.param_values}
    for n in out.nodes:
        if n.op.name == "constant":
            known.update(n.outputs)
        else:
            assert not all(v in known for v in n.inputs), f"{n.op.name} was left unfolded in\n{out}"


def test_random_graphs_fold_something():
    """Guard against a generator that never produces foldable work (the test above would
    then pass vacuously)."""
    folded = 0
    for seed in range(25):
        g = random_graph(seed)
        out = PassManager("inference").run(g)
        folded += len(g.nodes) - len(out.nodes)
    assert folded > 100
