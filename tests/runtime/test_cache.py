"""The on-disk compile cache: hits link the stored machine code; anything that changes
the code misses; damaged entries are misses, never crashes."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KILN_CACHE", raising=False)
    return tmp_path


def graph(scale=2.0, w=None):
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", 8)))
    w = g.add_param("w", np.ones((8, 4), np.float32) if w is None else w)
    g.set_outputs([g.op("relu", g.op("mul", g.op("matmul", x, w), g.constant(scale)))])
    return g


def test_second_compile_hits_and_runs_the_same():
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    a = kiln.compile(graph())
    b = kiln.compile(graph())
    assert (a.cache_hit, b.cache_hit) == (False, True)
    np.testing.assert_array_equal(a(x), b(x))
    assert "kiln_main" in b.llvm_ir and "kiln_main" in b.asm   # made on demand


def test_new_weights_reuse_the_code_but_are_used():
    x = np.ones((2, 8), np.float32)
    kiln.compile(graph())
    b = kiln.compile(graph(w=np.full((8, 4), 3.0, np.float32)))
    assert b.cache_hit
    np.testing.assert_allclose(b(x), np.full((2, 4), 8 * 3.0 * 2.0))


def test_a_different_graph_misses():
    kiln.compile(graph(2.0))
    assert not kiln.compile(graph(3.0)).cache_hit


def test_cache_can_be_turned_off(monkeypatch):
    kiln.compile(graph())
    assert not kiln.compile(graph(), cache=False).cache_hit
    monkeypatch.setenv("KILN_CACHE", "0")
    assert not kiln.compile(graph()).cache_hit


def test_damaged_entry_is_a_miss(private_cache):
    kiln.compile(graph()).wait_optimized()       # (the optimized tier stores the entry)
    (entry,) = (private_cache / "jit").glob("*.o")
    data = entry.read_bytes()
    entry.write_bytes(data[:-100])                 # truncated
    exe = kiln.compile(graph())
    assert not exe.cache_hit
    np.testing.assert_allclose(exe(np.ones((1, 8), np.float32)), np.full((1, 4), 16.0))
