"""A cold compile's cheaper paths: the C builds of the thread pool and of the call
extension run beside the compile (``threads.prepare``, ``fastcall.prepare``), and the optimized module's text is printed only when asked for
-- both without changing what is compiled or how it is shown."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kiln
from kiln.codegen.llvm import lower_graph
from kiln.codegen.llvm.target import jit, jit_quick, module_text
from kiln.ir import Graph, TensorType
from kiln.runtime import fastcall
from kiln.runtime.executable import optimize_graph

#: whether this machine builds the call extension (kiln/runtime/fastcall.py) too
FAST_CALL = fastcall.entry_type() is not None


def dense(k=16, n=8, seed=0):
    rng = np.random.default_rng(seed)
    g = Graph("d")
    x = g.add_input("x", TensorType(("N", k)))
    w = g.add_param("w", rng.standard_normal((k, n)).astype(np.float32))
    b = g.add_param("b", rng.standard_normal(n).astype(np.float32))
    g.set_outputs([g.op("softmax", g.op("relu", g.op("add", g.op("matmul", x, w), b)))])
    return g


def lowered_module():
    _, optimized = optimize_graph(dense())
    return lower_graph(optimized).module


def test_lazy_optimized_text_is_the_eager_one():
    text = module_text(lowered_module())
    eager = jit(text, keep_texts=True)
    lazy = jit(text, keep_texts=False)
    assert callable(lazy._texts)             # nothing printed yet
    assert lazy.ll_before == eager.ll_before == text
    assert lazy.ll_after == eager.ll_after
    assert "kiln_main:" in lazy.asm
    q_eager, q_lazy = jit_quick(text, keep_texts=True), jit_quick(text, keep_texts=False)
    assert q_lazy.ll_after == q_eager.ll_after


def test_before_codegen_runs_once_before_the_code_is_made():
    calls = []
    c = jit(module_text(lowered_module()), before_codegen=lambda: calls.append(1))
    assert calls == [1] and c.address("kiln_main")
    calls.clear()
    q = jit_quick(module_text(lowered_module()), before_codegen=lambda: calls.append(1))
    assert calls == [1] and q.address("kiln_main")


def test_executable_code_views_without_eager_text(tmp_path):
    g = dense()
    exe = kiln.compile(g, cache=False)
    assert callable(exe._compiled._texts)
    ref = jit(lower_graph(exe.graph).module)
    assert exe.llvm_ir_optimized == ref.ll_after
    assert exe.llvm_ir == ref.ll_before
    dumped = kiln.compile(g, cache=False, dump_dir=tmp_path)
    opt = sorted(tmp_path.glob("*-llvm-opt.ll"))
    assert opt and opt[0].read_text() == ref.ll_after
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(exe(x), dumped(x))


def _run(code, cache_dir, **env):
    e = dict(os.environ, KILN_CACHE_DIR=str(cache_dir), KILN_CACHE="1", **env)
    e["PYTHONPATH"] = os.pathsep.join([os.getcwd(), e.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=e,
                          capture_output=True, text=True, timeout=300)


COMPILE = """
    import warnings, numpy as np, kiln
    from kiln.ir import Graph, TensorType
    g = Graph("d")
    x = g.add_input("x", TensorType(("N", 4)))
    w = g.add_param("w", np.ones((4, 3), np.float32))
    g.set_outputs([g.op("matmul", x, w)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exe = kiln.compile(g, threads=2)
    print("threads", exe.threads, "warned", any("single-threaded" in str(w.message) for w in caught))
    print("out", exe(np.ones((2, 4), np.float32)).tolist(), "c-call", exe._entry is not None)
"""


@pytest.mark.skipif(not any(os.path.exists(os.path.join(p, "cc"))
                            for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="no C compiler")
def test_cold_cache_builds_the_pool_beside_the_compile(tmp_path):
    r = _run(COMPILE, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "threads 2 warned False" in r.stdout
    assert f"out [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]] c-call {FAST_CALL}" in r.stdout
    libs = sorted(p.name for p in tmp_path.glob("*.so"))      # no temporary left
    assert [n.split("-")[0] for n in libs] == (["kiln_call", "libkiln_threads"] if FAST_CALL
                                               else ["libkiln_threads"]), libs
    r = _run(COMPILE, tmp_path)                                          # warm: no build
    assert r.returncode == 0 and "threads 2 warned False" in r.stdout, r.stderr


def test_a_failing_pool_build_still_compiles_serially(tmp_path):
    r = _run(COMPILE, tmp_path, CC=str(tmp_path / "no-such-compiler"))
    assert r.returncode == 0, r.stderr
    assert "threads 1 warned True" in r.stdout
    assert "out [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]] c-call False" in r.stdout   # the ctypes path
    assert not list(tmp_path.glob("*.so"))


@pytest.mark.skipif(not any(os.path.exists(os.path.join(p, "cc"))
                            for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="no C compiler")
def test_a_build_nobody_waits_for_still_lands_at_exit(tmp_path):
    r = _run("""
        from kiln.runtime import threads
        threads.prepare()
        assert threads.BUILD.pending is not None
        raise SystemExit(0)     # e.g. a compile that failed in the graph passes
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    libs = sorted(p.name for p in tmp_path.glob("*.so"))
    assert len(libs) == 1 and libs[0].startswith("libkiln_threads-")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_leaves_the_parents_build_alone(tmp_path):
    r = _run("""
        import os
        from kiln.runtime import threads
        threads.prepare()
        pid = os.fork()
        if pid == 0:        # the child: not its build; it builds (or finds) its own
            path = threads.BUILD.build()
            os._exit(0 if path.exists() else 3)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        assert threads.BUILD.build().exists()
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    libs = sorted(p.name for p in tmp_path.glob("*.so"))
    assert len(libs) == 1 and libs[0].startswith("libkiln_threads-")
