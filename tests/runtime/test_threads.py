"""The thread pool: threaded and serial executables agree, pools are shared, the
thread count is configurable and checked."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType
from kiln.runtime import threads


def dense(k, n, seed=0):
    rng = np.random.default_rng(seed)
    g = Graph("d")
    x = g.add_input("x", TensorType(("N", k)))
    w = g.add_param("w", rng.standard_normal((k, n)).astype(np.float32))
    b = g.add_param("b", rng.standard_normal(n).astype(np.float32))
    g.set_outputs([g.op("relu", g.op("add", g.op("matmul", x, w), b))])
    return g


@pytest.mark.parametrize("k,n", [(300, 257), (64, 512), (784, 33)])
def test_threaded_equals_serial_bit_for_bit(k, n):
    g = dense(k, n)
    serial = kiln.compile(g, threads=1)
    threaded = kiln.compile(g, threads=2)
    assert serial.threads == 1
    assert threaded.threads in (1, 2)       # 1 only where no C compiler is available
    rng = np.random.default_rng(1)
    for m in (1, 5, 64, 301):               # small work runs serially, large splits panels
        x = rng.standard_normal((m, k)).astype(np.float32)
        np.testing.assert_array_equal(threaded(x), serial(x))
        w, b = g.param_values["w"], g.param_values["b"]
        np.testing.assert_allclose(serial(x), np.maximum(x @ w + b, 0), rtol=1e-4, atol=1e-4)


def test_pools_are_shared_per_thread_count():
    assert threads.pool(1) == 0
    assert threads.pool(2) == threads.pool(2)


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_thread_counts(bad):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        kiln.compile(dense(4, 4), threads=bad)


def test_env_var(monkeypatch):
    monkeypatch.setenv("KILN_NUM_THREADS", "1")
    assert threads.default_threads() == 1
    monkeypatch.setenv("KILN_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="KILN_NUM_THREADS must be a positive integer"):
        threads.default_threads()


def test_pool_runs_every_unit_once_under_stress(tmp_path):
    """The C pool itself (kiln/runtime/c/kiln_threads.c), driven by a C harness: every
    unit of 21,000 jobs runs exactly once -- chunked or not, with workers spinning or
    woken from sleep, more threads than cores, a second caller sharing the pool, and
    calls nested inside tasks."""
    import shutil
    import subprocess
    from pathlib import Path
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "stress"
    harness = Path(__file__).with_name("pool_c") / "stress.c"
    subprocess.run([cc, "-O2", "-pthread", str(harness), str(threads.SOURCE), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
