"""Memory planning: arena offsets, liveness, in-place reuse, reports -- and a checker
that no two buffers live at the same time overlap, on random graphs."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType, parse, verify
from kiln.ir.types import Poly
from kiln.passes import PassManager, get_pass
from kiln.passes.memory import check_plan, classify, lifetimes, report, slot_size

from .test_fusion import random_fusible_graph
from .util import ir

memory = get_pass("memory")


def chain():
    return parse(ir("""
        graph @c(%x: f32[N,8]) -> f32[N,8] {
          %0: f32[N,8] = exp(%x)
          %1: f32[N,8] = neg(%0)
          %2: f32[N,8] = tanh(%1)
          %3: f32[N,8] = add(%2, %0)
          %4: f32[N,8] = sigmoid(%3)
          return %4
        }"""))


def test_plan_prints_and_parses_back():
    out = memory(chain())
    text = str(out)
    assert "%0: f32[N,8] @arena[0] = exp(%x)" in text
    assert "%4: f32[N,8] = sigmoid(%3)" in text          # a graph output: written in place
    back = parse(text)
    assert str(back) == text
    assert {str(v) for v in back.arena.values()} == {str(v) for v in out.arena.values()}


def test_in_place_reuse_and_liveness():
    out = memory(chain())
    offs = {str(kiln.ir.printer.value_names(out)[v]): str(o) for v, o in out.arena.items()}
    # %0 is read by %3, so %1 cannot overwrite it; %2 overwrites %1 (dies there), %3
    # overwrites %2 (or %0): two slots of 64*N bytes (8 floats rounded up to 64 bytes)
    assert offs["%1"] == offs["%2"] != offs["%0"]
    assert len(set(offs.values())) == 2
    assert report(out, {"N": 10}) == {"arena_bytes": 2 * 64 * 10, "naive_bytes": 4 * 64 * 10,
                                      "lower_bound_bytes": 2 * 64 * 10}
    check_plan(out)


def test_offsets_are_polynomials_in_n():
    g = parse(ir("""
        graph @p(%x: f32[N,8], %w: f32[8,300]) -> f32[300,N] {
          %0: f32[N,300] = matmul(%x, %w)
          %1: f32[300,N] = transpose(%0) {perm=[1, 0]}
          %2: f32[300,N] = exp(%1)
          return %2
        }"""))
    out = memory(g)
    assert [str(o) for o in out.arena.values()] == ["0", "1216*N"]   # 300 floats -> 1216 bytes/row


def test_checker_catches_overlap():
    out = memory(chain())
    v0 = out.nodes[0].outputs[0]
    v1 = out.nodes[1].outputs[0]
    out.arena[v1] = out.arena[v0]       # %0 is still live when %1 is written
    with pytest.raises(AssertionError, match="overlap"):
        check_plan(out)


def brute_force_no_overlap(g, n):
    """Independent of the planner's polynomial logic: concrete byte intervals at N=n."""
    storage = classify(g)
    life = lifetimes(g, storage)
    b = {"N": n}
    iv = {}
    for v in life:
        start = g.arena[v].evaluate(b)
        iv[v] = (start, start + int(np.prod(v.type.concrete(b))) * v.type.dtype.itemsize)
    vs = list(life)
    for i, a in enumerate(vs):
        for c in vs[i + 1:]:
            (a0, a1), (c0, c1) = life[a], life[c]
            if a1 < c0 or c1 < a0:
                continue
            shared_instant = g.arena[a] == g.arena[c] and (a1 == c0 or c1 == a0)
            if shared_instant:  # in place: the same elements, read then written
                continue
            assert iv[a][1] <= iv[c][0] or iv[c][1] <= iv[a][0], (a, c, iv[a], iv[c])
        assert iv[a][0] % 64 == 0


@pytest.mark.parametrize("seed", range(12))
def test_random_plans_never_overlap_and_run_correctly(seed):
    g = random_fusible_graph(seed)
    for passes in (["memory"], ["dce", "fusion", "memory"]):
        out = PassManager(passes).run(g)
        check_plan(out)
        for n in (0, 1, 7, 64):
            brute_force_no_overlap(out, n)
        r = report(out, {"N": 64})
        assert r["lower_bound_bytes"] <= r["arena_bytes"] <= r["naive_bytes"] or r["naive_bytes"] == 0
        exe = kiln.compile(g, passes=passes)
        rng = np.random.default_rng(seed)
        for n in (1, 5):
            xs = [rng.standard_normal(v.type.concrete({"N": n})).astype(np.float32) for v in g.inputs]
            want = kiln.interpret(g, *xs)
            got = exe(*xs)
            want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
            for w, c in zip(want, got):
                np.testing.assert_allclose(c, w, rtol=2e-5, atol=2e-5 * max(1.0, float(np.abs(w).max())))


def test_memory_report_through_the_executable():
    m = kiln.Sequential([kiln.Input(shape=(64,)), kiln.layers.Dense(32, activation="relu"),
                         kiln.layers.Dense(32, activation="relu"), kiln.layers.Dense(32, activation="relu"),
                         kiln.layers.Dense(4)])
    exe = kiln.compile(m)
    r = exe.memory_report(batch_size=16)
    assert r["arena_bytes"] <= 1.15 * r["lower_bound_bytes"]
    assert r["arena_bytes"] < r["naive_bytes"]


def _sgd_graph(read_after: bool):
    """w <- w - lr * g (one elementwise kernel after fusion); with ``read_after`` the
    old w is also read by a later node, so the update must NOT write over w early."""
    g = Graph("sgd")
    x = g.add_input("x", TensorType(("N", 4)))
    grad = g.add_input("g", TensorType((4, 3)))
    w = g.add_param("w", np.arange(12, dtype=np.float32).reshape(4, 3))
    y = g.op("matmul", x, w)
    new_w = g.op("sub", w, g.op("mul", grad, g.constant(np.float32(0.5))))
    outs = [y]
    if read_after:
        outs.append(g.op("add", g.op("reduce_sum", w, axes=(0,), keepdims=False),
                         g.op("reduce_sum", new_w, axes=(0,), keepdims=False)))
    g.set_outputs(outs)
    g.add_update(w, new_w)
    return g


@pytest.mark.parametrize("read_after", [False, True])
def test_state_updates_computed_in_place_only_when_safe(read_after):
    g = PassManager(["fusion", "memory"]).run(_sgd_graph(read_after))
    (p, v), = g.updates
    in_place = classify(g)[v] == ("alias", p)
    assert in_place is (not read_after)
    exe = kiln.compile(g, passes=[], cache=False)
    x = np.ones((2, 4), np.float32)
    grad = np.full((4, 3), 2.0, np.float32)
    w0 = np.arange(12, dtype=np.float32).reshape(4, 3)
    for step in range(3):
        w_before = w0 - step * 1.0
        out = exe(x, grad)
        y = out[0] if read_after else out
        np.testing.assert_allclose(y, x @ w_before)
        if read_after:
            np.testing.assert_allclose(out[1], w_before.sum(0) + (w_before - 1.0).sum(0))
        np.testing.assert_allclose(exe.params["w"], w_before - 1.0)
    if in_place:   # no copy of the update at the end of the entry
        assert "llvm.memcpy" not in exe.llvm_ir.split("@\"kiln_main\"")[1].split("declare")[0]


def test_training_step_updates_every_weight_in_place():
    """An MLP's Adam step: every weight, slot and accumulator update is computed in place."""
    model = kiln.Sequential([kiln.Input((6,)), kiln.layers.Dense(5, activation="relu"),
                             kiln.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((8, 6), dtype=np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    g = model._train_step.train_exe.graph
    storage = classify(g)
    copied = [p.name for p, v in g.updates if storage[v] != ("alias", p)]
    trained = [p.name for p, _ in g.updates if "kernel" in p.name or "bias" in p.name]
    assert trained and not [n for n in copied if n in trained]
