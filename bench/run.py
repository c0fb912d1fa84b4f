"""kiln's CPU benchmark: every figure as a ratio against the tools people use,
measured in the same run. See bench/README.md for the environment.

    python bench/run.py [--models mlp] [--rounds 5] [--out bench/results.json]

Prints a markdown table; writes the raw figures (every round) as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("KERAS_BACKEND", "jax")


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def median_call(fn, calls: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, calls))


# -- the peers ----------------------------------------------------------------------------

def peers(tw, threads: int):
    """name -> function(x) -> numpy output, for this model."""
    import jax
    import onnxruntime as ort
    import torch

    import kiln

    torch.set_num_threads(threads)
    exe = kiln.compile(tw.kiln, threads=threads)
    ke = tw.keras
    # copies: keras' own predict may donate the variables' buffers
    tv = [jax.numpy.array(v.value) for v in ke.trainable_variables]
    ntv = [jax.numpy.array(v.value) for v in ke.non_trainable_variables]

    @jax.jit
    def keras_jit(tv, ntv, x):
        y, _ = ke.stateless_call(tv, ntv, x, training=False)
        return y

    tm = tw.torch
    tc = torch.compile(tm)
    onnx_path = Path(tempfile.mkdtemp()) / f"{tw.name}.onnx"
    torch.onnx.export(tm, torch.from_numpy(tw.sample(1)), str(onnx_path), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

    def run_torch(m):
        def f(x):
            with torch.inference_mode():
                return m(torch.from_numpy(x)).numpy()
        return f

    return {
        "kiln": exe,
        "onnxruntime": lambda x: sess.run(None, {"x": x})[0],
        "torch": run_torch(tm),
        "torch.compile": run_torch(tc),
        "keras-jit": lambda x: np.asarray(keras_jit(tv, ntv, x)),
        "keras-predict": lambda x: ke.predict(x, batch_size=max(len(x), 1), verbose=0),
    }


def inference(tw, threads: int, rounds: int, calls: int) -> dict:
    fns = peers(tw, threads)
    x1, x256 = tw.sample(1), tw.sample(256)
    ref = fns["kiln"](x256)
    for name, f in fns.items():   # equal outputs before anything is timed
        np.testing.assert_allclose(f(x256), ref, rtol=1e-3, atol=1e-4, err_msg=name)
    res: dict = {"latency_b1_s": {}, "throughput_b256": {}}
    for name, f in fns.items():
        n = calls if name != "keras-predict" else max(20, calls // 10)
        res["latency_b1_s"][name] = [median_call(lambda: f(x1), n) for _ in range(rounds)]
        res["throughput_b256"][name] = [256 / median_call(lambda: f(x256), max(10, n // 10), 3)
                                        for _ in range(rounds)]
    return res


# -- GEMM --------------------------------------------------------------------------------

GEMM_SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (256, 784, 512), (256, 512, 512)]


def kiln_gemm(m, k, n, threads, reps=5) -> float:
    import kiln
    from kiln.ir import Graph, TensorType
    g = Graph("g")
    x = g.add_input("x", TensorType(("N", k)))
    w = g.add_param("w", np.random.default_rng(0).standard_normal((k, n)).astype(np.float32))
    g.set_outputs([g.op("matmul", x, w)])
    exe = kiln.compile(g, threads=threads)
    a = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    exe(a)
    return 2 * m * k * n / min(timed(lambda: exe(a), reps)) / 1e9


NUMPY_GEMM = """
import numpy as np, time, sys
m, k, n = map(int, sys.argv[1:4])
a = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
b = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
a @ b
ts = []
for _ in range(5):
    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
print(2 * m * k * n / min(ts) / 1e9)
"""


def numpy_gemm(m, k, n, threads) -> float:
    """numpy's BLAS in a subprocess: thread count fixed, and OPENBLAS_CORETYPE /
    OPENBLAS_L2_SIZE unset for this run only (they slow a current OpenBLAS)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", NUMPY_GEMM, str(m), str(k), str(n)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def gemm(rounds: int) -> dict:
    res = {}
    for shape in GEMM_SHAPES:
        for t in (1, 2):
            key = f"{shape[0]}x{shape[1]}x{shape[2]}@{t}t"
            res[key] = {"kiln": [kiln_gemm(*shape, t) for _ in range(rounds)],
                        "numpy": [numpy_gemm(*shape, t) for _ in range(rounds)]}
    return res


# -- compile time ------------------------------------------------------------------------

COLD = {
    "kiln": "import bench_models_shim as s, kiln, time; tw = s.build('{m}'); t = time.perf_counter(); "
            "e = kiln.compile(tw.kiln); e(tw.sample(1)); print(time.perf_counter() - t)",
    "keras-predict": "import bench_models_shim as s, time; tw = s.build('{m}'); t = time.perf_counter(); "
                     "tw.keras.predict(tw.sample(1), verbose=0); print(time.perf_counter() - t)",
}


def compile_times(model: str, rounds: int) -> dict:
    res = {}
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for name, code in COLD.items():
        res[name] = [float(subprocess.run([sys.executable, "-c", code.format(m=model)], env=env,
                                          capture_output=True, text=True, check=True).stdout.split()[-1])
                     for _ in range(rounds)]
    return res


# -- report ------------------------------------------------------------------------------

def ratios(kiln_vals, peer_vals, higher_is_better: bool):
    r = [(k / p if higher_is_better else p / k) for k, p in zip(kiln_vals, peer_vals)]
    return min(r), statistics.median(r), max(r)


def table(results: dict) -> str:
    lines = ["| model | figure | peer | kiln | peer value | kiln speed-up (min / median / max) |",
             "|---|---|---|---|---|---|"]
    for model, r in results["models"].items():
        for fig, better in (("latency_b1_s", False), ("throughput_b256", True)):
            k = r[fig]["kiln"]
            for peer, v in r[fig].items():
                if peer == "kiln":
                    continue
                lo, med, hi = ratios(k, v, better)
                unit = "s" if fig.endswith("_s") else "samples/s"
                lines.append(f"| {model} | {fig} | {peer} | {statistics.median(k):.3g} {unit} | "
                             f"{statistics.median(v):.3g} {unit} | {lo:.2f} / {med:.2f} / {hi:.2f} |")
        if "compile_s" in r:
            k = r["compile_s"]["kiln"]
            for peer, v in r["compile_s"].items():
                if peer != "kiln":
                    lo, med, hi = ratios(k, v, False)
                    lines.append(f"| {model} | cold compile + first call | {peer} | "
                                 f"{statistics.median(k):.3g} s | {statistics.median(v):.3g} s | "
                                 f"{lo:.2f} / {med:.2f} / {hi:.2f} |")
    for key, r in results.get("gemm", {}).items():
        lo, med, hi = ratios(r["kiln"], r["numpy"], True)
        lines.append(f"| GEMM {key} | GFLOP/s | numpy BLAS | {statistics.median(r['kiln']):.1f} | "
                     f"{statistics.median(r['numpy']):.1f} | {lo:.2f} / {med:.2f} / {hi:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    from models import MODELS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--skip-gemm", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    results = {"commit": commit, "machine": platform.processor() or platform.machine(),
               "threads": args.threads, "models": {}}
    for name in args.models.split(","):
        tw = MODELS[name]()
        results["models"][name] = inference(tw, args.threads, args.rounds, args.calls)
        results["models"][name]["compile_s"] = compile_times(name, min(args.rounds, 3))
    if not args.skip_gemm:
        results["gemm"] = gemm(args.rounds)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"kiln benchmark, commit {commit}, {args.threads} threads\n")
    print(table(results))


if __name__ == "__main__":
    main()
