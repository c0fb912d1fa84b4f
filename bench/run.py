"""kiln's CPU benchmark: every figure as a ratio against the tools people use,
measured in the same run. See bench/README.md for the environment.

    python bench/run.py [--models mlp,cnn,resnet,lstm,transformer] [--rounds 5]
                        [--train-samples 60000] [--out bench/results.json]

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
_USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")   # as the user's shell set it


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

def peers(tw, threads: int, notes: dict):
    """name -> function(x) -> numpy output, for this model. A peer that cannot be built
    for this model is left out with a note (notes[peer] = why)."""
    import jax
    import onnxruntime as ort
    import torch

    import kiln

    torch.set_num_threads(threads)
    fns = {"kiln": kiln.compile(tw.kiln, threads=threads)}
    ke = tw.keras
    tm = tw.torch

    def guarded(name, make):
        try:
            fns[name] = make()
        except Exception as e:   # noqa: BLE001 -- reported, never hidden
            notes[name] = f"could not be built: {type(e).__name__}: {str(e)[:200]}"
            print(f"  note: {tw.name}: skipping {name}: {notes[name]}", flush=True)

    def make_onnx():
        onnx_path = Path(tempfile.mkdtemp()) / f"{tw.name}.onnx"
        torch.onnx.export(tm, torch.from_numpy(tw.sample(1)), str(onnx_path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        if os.environ.get("OMP_WAIT_POLICY") == "PASSIVE":   # the same no-spin choice
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(None, {"x": x})[0]

    def run_torch(m):
        def f(x):
            with torch.inference_mode():
                return m(torch.from_numpy(x)).numpy()
        return f

    def make_keras_jit():
        # copies: keras' own predict may donate the variables' buffers
        tv = [jax.numpy.array(v.value) for v in ke.trainable_variables]
        ntv = [jax.numpy.array(v.value) for v in ke.non_trainable_variables]

        @jax.jit
        def keras_jit(tv, ntv, x):
            y, _ = ke.stateless_call(tv, ntv, x, training=False)
            return y
        return lambda x: np.asarray(keras_jit(tv, ntv, x))

    guarded("onnxruntime", make_onnx)
    guarded("torch", lambda: run_torch(tm))
    guarded("torch.compile", lambda: run_torch(torch.compile(tm)))
    guarded("keras-jit", make_keras_jit)
    guarded("keras-predict", lambda: lambda x: ke.predict(x, batch_size=max(len(x), 1),
                                                             verbose=0))
    return fns


def inference(tw, threads: int, rounds: int, calls: int) -> dict:
    notes: dict = {}
    fns = peers(tw, threads, notes)
    x1, x256 = tw.sample(1), tw.sample(256)
    ref = fns["kiln"](x256)
    for name in list(fns):   # equal outputs before anything is timed
        if name == "kiln":
            continue
        try:
            y = np.asarray(fns[name](x256))
            np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-4, err_msg=name)
        except Exception as e:   # noqa: BLE001 -- never time a different model
            why = (f"max abs difference {np.max(np.abs(y - ref)):.3g} (rtol 1e-3, atol 1e-4)"
                   if isinstance(e, AssertionError) and y.shape == ref.shape
                   else f"{type(e).__name__}: {str(e).strip()[:200]}")
            notes[name] = f"output differs from kiln's: {why}"
            print(f"  note: {tw.name}: skipping {name}: {notes[name]}", flush=True)
            del fns[name]
    res: dict = {"latency_b1_s": {}, "throughput_b256": {}, "skipped": notes}
    for name, f in fns.items():
        n = calls if name != "keras-predict" else max(20, calls // 10)
        res["latency_b1_s"][name] = [median_call(lambda: f(x1), n) for _ in range(rounds)]
        res["throughput_b256"][name] = [256 / median_call(lambda: f(x256), max(10, n // 10), 3)
                                        for _ in range(rounds)]
        print(f"  {tw.name} {name}: b1 {statistics.median(res['latency_b1_s'][name]) * 1e3:.3f} ms, "
              f"b256 {statistics.median(res['throughput_b256'][name]):.0f}/s", flush=True)
    return res


# -- training ----------------------------------------------------------------------------

def _epoch_timer(base):
    class EpochTimer(base):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t)
    return EpochTimer()


def train_kiln(name, x, y, threads):
    import kiln
    from models import MODELS
    os.environ["KILN_NUM_THREADS"] = str(threads)
    tw = MODELS[name]()
    tw.kiln.compile(optimizer=kiln.optimizers.Adam(learning_rate=1e-3), loss=tw.loss)
    cb = _epoch_timer(kiln.callbacks.Callback)
    tw.kiln.fit(x, y, batch_size=128, epochs=2, verbose=0, callbacks=[cb])
    return len(x) / cb.times[1]


def train_keras(name, x, y, threads):
    import keras
    from models import MODELS
    tw = MODELS[name]()
    tw.keras.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss=tw.loss)
    cb = _epoch_timer(keras.callbacks.Callback)
    tw.keras.fit(x, y, batch_size=128, epochs=2, verbose=0, callbacks=[cb])
    return len(x) / cb.times[1]


def train_torch(name, x, y, threads):
    """A plain PyTorch eager loop: Adam(1e-3), batch 128, shuffled, the same loss as the
    Keras/kiln compile (the models end in softmax: cross-entropy on clipped probabilities)."""
    import torch
    from models import MODELS
    torch.set_num_threads(threads)
    tw = MODELS[name]()
    m = tw.torch.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)   # Keras' epsilon
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(2):
        t = time.perf_counter()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            p = m(xt[idx]).clamp(1e-7, 1 - 1e-7)
            loss = torch.nn.functional.nll_loss(torch.log(p), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return len(xt) / times[1]


TRAINERS = {"kiln": train_kiln, "keras-fit": train_keras, "torch-eager": train_torch}


TRAIN_CODE = ("import run, sys; from models import MODELS; tw = MODELS[{name!r}](); "
              "x, y = tw.sample({n}, seed=2), tw.targets({n}, seed=3); "
              "print(run.TRAINERS[{peer!r}]({name!r}, x, y, {threads}))")


def training(name: str, samples: int, threads: int, rounds: int, notes: dict) -> dict:
    """Each trainer in its own fresh process (no thread pool, JIT cache or allocator
    state shared with the inference peers or with each other); same data (seeded)."""
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    res = {}
    for peer in TRAINERS:
        res[peer] = []
        for _ in range(rounds):
            out = subprocess.run([sys.executable, "-c", TRAIN_CODE.format(
                name=name, n=samples, peer=peer, threads=threads)], env=env, cwd=HERE,
                capture_output=True, text=True)
            if out.returncode:   # reported (note + stderr tail), and the run goes on
                print(f"  note: {name}: training {peer} failed:\n{out.stderr[-3000:]}", flush=True)
                notes[f"train {peer}"] = "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:200]
                del res[peer]
                break
            res[peer].append(float(out.stdout.split()[-1]))
        if peer in res:
            print(f"  {name} train {peer}: {statistics.median(res[peer]):.0f} samples/s", flush=True)
    if "kiln" not in res:
        res = {}
    return res


# -- GEMM --------------------------------------------------------------------------------

GEMM_SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048),
               (256, 784, 512), (256, 512, 512),          # MLP layers at batch 256
               (256 * 64, 64, 512), (256, 128, 512),      # LSTM: input projection, recurrent step
               (256 * 128, 128, 512), (256 * 128, 512, 128)]   # Transformer FFN at batch 256


KILN_GEMM = """
import sys, time
import numpy as np
import kiln
from kiln.ir import Graph, TensorType
m, k, n, threads = map(int, sys.argv[1:5])
g = Graph("g")
x = g.add_input("x", TensorType(("N", k)))
w = g.add_param("w", np.random.default_rng(0).standard_normal((k, n)).astype(np.float32))
g.set_outputs([g.op("matmul", x, w)])
exe = kiln.compile(g, threads=threads)
a = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
for _ in range(3):
    exe(a)
ts = []
for _ in range(20):
    t = time.perf_counter(); exe(a); ts.append(time.perf_counter() - t)
print(2 * m * k * n / min(ts) / 1e9)
"""


def kiln_gemm(m, k, n, threads) -> float:
    """kiln's GEMM in a fresh subprocess, as numpy's: in this process the peers' thread
    pools (OpenMP, ONNX Runtime, XLA) may still be spinning after the model figures, and
    a short GEMM's second thread then never gets its core (seen: 256x512x512 at 2
    threads measured at the 1-thread speed in every round)."""
    out = subprocess.run([sys.executable, "-c", KILN_GEMM, str(m), str(k), str(n), str(threads)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


NUMPY_GEMM = """
import numpy as np, time, sys
m, k, n = map(int, sys.argv[1:4])
a = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
b = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
for _ in range(3):
    a @ b
ts = []
for _ in range(20):
    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
print(2 * m * k * n / min(ts) / 1e9)
"""


def numpy_gemm(m, k, n, threads) -> float:
    """numpy's BLAS in a subprocess: thread count fixed, and OPENBLAS_CORETYPE /
    OPENBLAS_L2_SIZE unset for this run only (they slow a current OpenBLAS)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if _USER_OMP_WAIT_POLICY is None:   # --omp-wait-policy is for torch, not numpy's BLAS
        env.pop("OMP_WAIT_POLICY", None)
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
    "kiln-tiered": "import bench_models_shim as s, kiln, time; tw = s.build('{m}'); t = time.perf_counter(); "
                   "e = kiln.compile(tw.kiln, tiered=True); e(tw.sample(1)); print(time.perf_counter() - t)",
    "keras-predict": "import bench_models_shim as s, time; tw = s.build('{m}'); t = time.perf_counter(); "
                     "tw.keras.predict(tw.sample(1), verbose=0); print(time.perf_counter() - t)",
}


def compile_times(model: str, rounds: int) -> dict:
    """Compile + first call in a fresh process. kiln cold: an empty compile cache
    (a fresh KILN_CACHE_DIR each round); kiln warm: a second process on that cache."""
    res = {"kiln": [], "kiln-warm": [], "kiln-tiered": [], "keras-predict": []}
    base = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")

    def once(code, env):
        out = subprocess.run([sys.executable, "-c", code.format(m=model)], env=env,
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"cold-compile subprocess failed:\n{out.stderr[-2000:]}")
        return float(out.stdout.split()[-1])

    for _ in range(rounds):
        env = dict(base, KILN_CACHE_DIR=tempfile.mkdtemp(prefix="kiln-cache-"), KILN_CACHE="1")
        res["kiln"].append(once(COLD["kiln"], env))
        res["kiln-warm"].append(once(COLD["kiln"], env))
        env = dict(env, KILN_CACHE_DIR=tempfile.mkdtemp(prefix="kiln-cache-"))
        res["kiln-tiered"].append(once(COLD["kiln-tiered"], env))
        res["keras-predict"].append(once(COLD["keras-predict"], base))
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
        if r.get("train_samples_s"):
            k = r["train_samples_s"]["kiln"]
            for peer, v in r["train_samples_s"].items():
                if peer != "kiln":
                    lo, med, hi = ratios(k, v, True)
                    lines.append(f"| {model} | train samples/s (2nd epoch, batch 128, Adam) | "
                                 f"{peer} | {statistics.median(k):.0f} | "
                                 f"{statistics.median(v):.0f} | {lo:.2f} / {med:.2f} / {hi:.2f} |")
        if "compile_s" in r:
            k = r["compile_s"]["kiln"]
            w = r["compile_s"].get("kiln-warm")
            if w:
                lines.append(f"| {model} | warm compile (kiln's disk cache) + first call | - | "
                             f"{statistics.median(w):.3g} s | - | - |")
            for mine, what in (("kiln", "cold compile + first call"),
                               ("kiln-tiered", "cold compile + first call, tiered=True")):
                k = r["compile_s"].get(mine)
                for peer, v in r["compile_s"].items():
                    if k and peer not in ("kiln", "kiln-warm", "kiln-tiered"):
                        lo, med, hi = ratios(k, v, False)
                        lines.append(f"| {model} | {what} | {peer} | "
                                     f"{statistics.median(k):.3g} s | {statistics.median(v):.3g} s | "
                                     f"{lo:.2f} / {med:.2f} / {hi:.2f} |")
    for key, r in results.get("gemm", {}).items():
        lo, med, hi = ratios(r["kiln"], r["numpy"], True)
        lines.append(f"| GEMM {key} | GFLOP/s | numpy BLAS | {statistics.median(r['kiln']):.1f} | "
                     f"{statistics.median(r['numpy']):.1f} | {lo:.2f} / {med:.2f} / {hi:.2f} |")
    for model, r in results["models"].items():
        for peer, why in r.get("skipped", {}).items():
            lines.append(f"\nskipped: {model} / {peer}: {why}")
    return "\n".join(lines)


def main(argv=None):
    from models import MODELS, TRAIN_MODELS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated, of {','.join(MODELS)}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--train-samples", type=int, default=60000,
                    help="samples per training epoch (the second epoch is timed)")
    ap.add_argument("--train-rounds", type=int, default=1)
    ap.add_argument("--compile-rounds", type=int, default=3)
    ap.add_argument("--skip-gemm", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--omp-wait-policy", choices=["active", "passive"], default=None,
                    help="set OMP_WAIT_POLICY for PyTorch's OpenMP threads (default: unset, "
                         "torch's own default); 'passive' (which also turns off ONNX Runtime's "
                         "intra-op spinning) on a loaded machine, where spinning threads "
                         "collapse torch's multi-threaded figures")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args(argv)
    if args.omp_wait_policy:     # before torch is imported; inherited by the subprocesses
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    results = {"commit": commit, "machine": platform.processor() or platform.machine(),
               "threads": args.threads, "loadavg_start": os.getloadavg(), "args": vars(args),
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
               "models": {}}

    def save():
        Path(args.out).write_text(json.dumps(results, indent=1))

    for name in names:
        print(f"[{name}] inference", flush=True)
        tw = MODELS[name]()
        results["models"][name] = inference(tw, args.threads, args.rounds, args.calls)
        del tw
        if name in TRAIN_MODELS and not args.skip_train:
            print(f"[{name}] training, {args.train_samples} samples/epoch", flush=True)
            results["models"][name]["train_samples_s"] = training(
                name, args.train_samples, args.threads, args.train_rounds,
                results["models"][name]["skipped"])
        if name in TRAIN_MODELS and not args.skip_compile:
            print(f"[{name}] cold/warm compile", flush=True)
            try:
                results["models"][name]["compile_s"] = compile_times(name, args.compile_rounds)
            except RuntimeError as e:   # reported, and the run goes on
                print(f"  note: {name}: {e}", flush=True)
                results["models"][name]["skipped"]["compile"] = str(e).splitlines()[-1][:200]
        save()
    if not args.skip_gemm:
        print("[gemm]", flush=True)
        results["gemm"] = gemm(args.rounds)
    results["loadavg_end"] = os.getloadavg()
    save()
    print(f"\nkiln benchmark, commit {commit}, {args.threads} threads, load average "
          f"{results['loadavg_start'][0]:.2f} at start, {results['loadavg_end'][0]:.2f} at end, "
          f"OMP_WAIT_POLICY={results['OMP_WAIT_POLICY']}\n")
    print(table(results))


if __name__ == "__main__":
    main()
