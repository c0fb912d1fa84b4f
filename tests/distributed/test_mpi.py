"""Data-parallel training under ``mpirun`` (2 ranks, and 3 for uneven shards) against
one process on the whole global batch. Skipped when mpirun or mpi4py is missing
(.ci/run installs Open MPI and mpi4py).

How close: the ranks' weights are bit-identical (one Allreduce, then the same apply
code on the same numbers). Against one process they differ only by the order of the
gradient sums (per shard, then over ranks; and the shard weights n_r / B rounded to
f32): after 10 Adam steps the largest difference is ~1e-7, checked at 1e-5. The loss
and metrics in History are the global values (same tolerance)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

MPIRUN = shutil.which("mpirun")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    MPIRUN is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpirun (apt-get install openmpi-bin) and mpi4py (pip install 'kiln[distributed]')")]

WORKER = Path(__file__).with_name("worker.py")
TIMEOUT = 120


def mpirun(n: int, *args, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    cmd = [MPIRUN, "-n", str(n), "--oversubscribe", "--bind-to", "none"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    env = dict(os.environ, KILN_NUM_THREADS="1")
    return subprocess.run(cmd + [sys.executable, str(WORKER), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def ranks(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"mpi{request.param}")
    res = mpirun(request.param, "main", out)
    assert res.returncode == 0, res.stdout + res.stderr
    files = sorted(out.glob("rank*.npz"))
    assert len(files) == request.param
    return [dict(np.load(f)) for f in files], out


def _same_on_every_rank(results, prefix):
    keys = [k for k in results[0] if k.startswith(prefix)]
    assert keys
    for k in keys:
        for other in results[1:]:
            assert np.array_equal(results[0][k], other[k]), k


def test_ranks_end_bit_identical(ranks):
    results, _ = ranks
    _same_on_every_rank(results, "w")          # seeded run
    _same_on_every_rank(results, "seeded_w")   # a different seed on each rank, dropout, shuffle
    _same_on_every_rank(results, "bn_")        # BatchNormalization moving statistics
    for r in results:
        assert r["history"] == results[0]["history"]


def test_equals_one_process_on_the_global_batch(ranks):
    results, _ = ranks
    r0 = results[0]
    n = len([k for k in r0 if k.startswith("ref_w")])
    assert n == 4
    for i in range(n):
        np.testing.assert_allclose(r0[f"w{i}"], r0[f"ref_w{i}"], rtol=0, atol=1e-5)
    hist, ref = json.loads(str(r0["history"])), json.loads(str(r0["ref_history"]))
    assert hist.keys() == ref.keys() == {"loss", "accuracy"}
    for k in hist:
        np.testing.assert_allclose(hist[k], ref[k], rtol=1e-5)
    # one Allreduce per step: 50 samples in global batches of 12, 2 epochs
    assert all(int(r["allreduces"]) == int(r["steps"]) == 10 for r in results)
    # even shards: the averaged moving mean is the one-process moving mean
    np.testing.assert_allclose(r0["bn_0"], r0["ref_bn_0"], rtol=0, atol=1e-5)


def test_checkpoints_by_rank_0_loaded_by_every_rank(ranks):
    results, out = ranks
    assert [int(r["ckpt_saves"]) for r in results] == [2] + [0] * (len(results) - 1)
    assert all(bool(r["ckpt_matches"]) for r in results)
    assert (out / "ckpt.npz").exists()


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    start = time.monotonic()
    res = mpirun(2, "fail", tmp_path, timeout=60)
    took = time.monotonic() - start
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "RuntimeError: injected failure on rank 1" in text
    assert "kiln.distributed: rank 1 of 2 failed" in text
    assert took < 60
