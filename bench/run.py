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
import shutil
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
#
# Each peer runs in its own process (started once per model, idle between its turns),
# and the rounds go round the peers: round r times every peer once before round r+1.
# In one shared process the peers' thread pools (OpenMP, ONNX Runtime, XLA) kept
# spinning after their turn and starved kiln's second thread on short calls (seen in
# session 4 on GEMMs: 0.58x BLAS in-process, 1.1x alone); and rounds taken one peer
# after the other put a slow phase of the machine on one peer only.

PEERS = ("kiln", "onnxruntime", "torch", "torch.compile", "keras-jit", "keras-predict")
SETTLE_S = 0.3      # between two peers' turns: a pool that spins after its work goes idle


def make_peer(tw, name: str, threads: int):
    """The function x -> numpy output of peer ``name`` for the model ``tw``."""
    if name == "kiln":
        import kiln        # steady state: the optimized tier (the compile figures time tiering)
        return kiln.compile(tw.kiln, threads=threads).wait_optimized()
    ke, tm = tw.keras, tw.torch
    if name == "onnxruntime":
        import onnxruntime as ort
        import torch
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
    if name in ("torch", "torch.compile"):
        import torch
        m = torch.compile(tm) if name == "torch.compile" else tm

        def f(x):
            with torch.inference_mode():
                return m(torch.from_numpy(x)).numpy()
        return f
    if name == "keras-jit":
        import jax
        # copies: keras' own predict may donate the variables' buffers
        tv = [jax.numpy.array(v.value) for v in ke.trainable_variables]
        ntv = [jax.numpy.array(v.value) for v in ke.non_trainable_variables]

        @jax.jit
        def keras_jit(tv, ntv, x):
            y, _ = ke.stateless_call(tv, ntv, x, training=False)
            return y
        return lambda x: np.asarray(keras_jit(tv, ntv, x))
    if name == "keras-predict":
        return lambda x: ke.predict(x, batch_size=max(len(x), 1), verbose=0)
    raise ValueError(f"unknown peer {name!r}")


def _peer_worker(model: str, peer: str, threads: int, conn):
    """A peer's process: build the model's twins (same seeds, same weights in every
    process), then this peer alone, and answer the parent's requests."""
    sys.path.insert(0, str(HERE))
    try:
        import torch
        torch.set_num_threads(threads)
        from models import MODELS
        tw = MODELS[model]()
        fn = make_peer(tw, peer, threads)
    except Exception as e:   # noqa: BLE001 -- reported, never hidden
        conn.send(("error", f"could not be built: {type(e).__name__}: {str(e)[:200]}"))
        return
    conn.send(("ok", (tw.input_shape, tw.input_dtype, tw.vocab)))
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "exit":
                return
            if cmd == "run":
                conn.send(("ok", np.asarray(fn(args[0]))))
            elif cmd == "time":
                x, calls, warmup = args
                conn.send(("ok", median_call(lambda: fn(x), calls, warmup)))
        except Exception as e:   # noqa: BLE001
            conn.send(("error", f"{type(e).__name__}: {str(e).strip()[:200]}"))


class Peers:
    """One process per peer for one model; ``ask(peer, cmd, ...)`` -> its answer, or
    None after noting why the peer is out (notes[peer])."""

    def __init__(self, model: str, threads: int, notes: dict):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")      # no inherited thread pools or JIT state
        self.notes, self.live, self.procs = notes, {}, []
        started = {}
        for peer in PEERS:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_peer_worker, args=(model, peer, threads, child), daemon=True)
            proc.start()
            self.procs.append(proc)
            started[peer] = parent
        self.info = None
        for peer, conn in started.items():
            status, payload = self._recv(conn)
            if status == "ok":
                self.live[peer] = conn
                self.info = self.info or payload
            else:
                self._drop(peer, payload)

    @staticmethod
    def _recv(conn):
        try:
            return conn.recv()
        except (EOFError, OSError) as e:
            return "error", f"its process died: {type(e).__name__}"

    def _drop(self, peer, why):
        self.notes[peer] = why
        print(f"  note: skipping {peer}: {why}", flush=True)
        self.live.pop(peer, None)

    def ask(self, peer, *msg):
        conn = self.live[peer]
        conn.send(msg)
        status, payload = self._recv(conn)
        if status != "ok":
            self._drop(peer, payload)
            return None
        return payload

    def close(self):
        for conn in self.live.values():
            try:
                conn.send(("exit",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def inference(model: str, threads: int, rounds: int, calls: int) -> dict:
    from models import Twins
    notes: dict = {}
    peers = Peers(model, threads, notes)
    try:
        if "kiln" not in peers.live:
            raise RuntimeError(f"kiln could not run {model}: {notes.get('kiln')}")
        shape, dtype, vocab = peers.info
        tw = Twins(model, None, None, None, shape, dtype, vocab)
        x1, x256 = tw.sample(1), tw.sample(256)
        ref = peers.ask("kiln", "run", x256)
        for name in [p for p in peers.live if p != "kiln"]:   # equal outputs before timing
            y = peers.ask(name, "run", x256)
            if y is None:
                continue
            try:
                np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-4, err_msg=name)
            except AssertionError:
                why = (f"max abs difference {np.max(np.abs(y - ref)):.3g} (rtol 1e-3, atol 1e-4)"
                       if y.shape == ref.shape else f"shape {y.shape}, kiln's {ref.shape}")
                peers._drop(name, f"output differs from kiln's: {why}")
        res: dict = {"latency_b1_s": {}, "throughput_b256": {}, "skipped": notes}
        for r in range(rounds):
            for name in list(peers.live):
                n = calls if name != "keras-predict" else max(20, calls // 10)
                time.sleep(SETTLE_S)
                b1 = peers.ask(name, "time", x1, n, 20)
                time.sleep(SETTLE_S)
                b256 = peers.ask(name, "time", x256, max(10, n // 10), 3)
                if b1 is None or b256 is None:
                    continue
                res["latency_b1_s"].setdefault(name, []).append(b1)
                res["throughput_b256"].setdefault(name, []).append(256 / b256)
        for name in notes:          # a peer that failed mid-run: no partial figures
            res["latency_b1_s"].pop(name, None)
            res["throughput_b256"].pop(name, None)
        for name in res["latency_b1_s"]:
            print(f"  {model} {name}: b1 {statistics.median(res['latency_b1_s'][name]) * 1e3:.3f} ms, "
                  f"b256 {statistics.median(res['throughput_b256'][name]):.0f}/s", flush=True)
        return res
    finally:
        peers.close()


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
exe = kiln.compile(g, threads=threads).wait_optimized()
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
    "kiln-untiered": "import bench_models_shim as s, kiln, time; tw = s.build('{m}'); t = time.perf_counter(); "
                     "e = kiln.compile(tw.kiln, tiered=False); e(tw.sample(1)); print(time.perf_counter() - t)",
    "keras-predict": "import bench_models_shim as s, time; tw = s.build('{m}'); t = time.perf_counter(); "
                     "tw.keras.predict(tw.sample(1), verbose=0); print(time.perf_counter() - t)",
}


def compile_times(model: str, rounds: int) -> dict:
    """Compile + first call in a fresh process. kiln cold: an empty compile cache (a
    fresh KILN_CACHE_DIR each round holding only kiln's runtime libraries -- the thread
    pool and the call extension, built from C once per installation, see
    kiln/runtime/cbuild.py; the default, tiered compile); kiln warm: a second process on
    that cache; kiln untiered: ``tiered=False`` on an empty compile cache; kiln first
    use: a cache directory with nothing in it (the C compiler builds both during the
    compile)."""
    res = {"kiln": [], "kiln-warm": [], "kiln-untiered": [], "kiln-first-use": [],
           "keras-predict": []}
    base = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    runtime = tempfile.mkdtemp(prefix="kiln-runtime-")
    subprocess.run([sys.executable, "-c", "import kiln.runtime.threads as t, kiln.runtime.fastcall as f; "
                    "t.pool(2); f.entry_type()"], env=dict(base, KILN_CACHE_DIR=runtime), check=True)

    def cold_cache() -> str:
        d = tempfile.mkdtemp(prefix="kiln-cache-")
        for lib in Path(runtime).glob("*.so"):
            shutil.copy(lib, d)
        return d

    def once(code, env):
        out = subprocess.run([sys.executable, "-c", code.format(m=model)], env=env,
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"cold-compile subprocess failed:\n{out.stderr[-2000:]}")
        return float(out.stdout.split()[-1])

    for _ in range(rounds):
        env = dict(base, KILN_CACHE_DIR=cold_cache(), KILN_CACHE="1")
        res["kiln"].append(once(COLD["kiln"], env))
        res["kiln-warm"].append(once(COLD["kiln"], env))
        env = dict(env, KILN_CACHE_DIR=cold_cache())
        res["kiln-untiered"].append(once(COLD["kiln-untiered"], env))
        env = dict(env, KILN_CACHE_DIR=tempfile.mkdtemp(prefix="kiln-cache-"))
        res["kiln-first-use"].append(once(COLD["kiln"], env))
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
                               ("kiln-untiered", "cold compile + first call, tiered=False"),
                               ("kiln-first-use", "first use of kiln (builds its thread pool) "
                                                  "+ cold compile + first call")):
                k = r["compile_s"].get(mine)
                for peer, v in r["compile_s"].items():
                    if k and not peer.startswith("kiln"):
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
        results["models"][name] = inference(name, args.threads, args.rounds, args.calls)
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
