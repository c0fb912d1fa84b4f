"""kiln serve: throughput and latency with and without dynamic batching.

    python bench/serve_bench.py [--model mlp|wide|SPEC] [--clients 20] [--requests 2000] [--rows 1]

Starts `kiln serve` on 127.0.0.1 (a free port) once per configuration, sends
``--requests`` predict requests (row format, ``--rows`` rows each, bodies encoded
before the clock starts) from ``--clients`` threads with kept-alive connections, and
reports requests/s, rows/s and the p50/p99 latency of each configuration. Models:
``mlp``, the README's MLP (784-512-512-10: reading 784 JSON numbers costs more than
the native call), and ``wide`` (64-2048-2048-10: 17 MB of weights read per call, so
calls on more rows are much cheaper per row); or any SPEC. Not a test: nothing is
asserted.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HOST = "127.0.0.1"
MODELS = {"mlp": (784, 512), "wide": (64, 2048)}
MODEL_FILE = '''
import kiln

def model():
    kiln.utils.set_random_seed(0)
    return kiln.Sequential([kiln.Input(shape=({inputs},)),
                            kiln.layers.Dense({hidden}, activation="relu"),
                            kiln.layers.Dense({hidden}, activation="relu"),
                            kiln.layers.Dense(10, activation="softmax")])
'''


def start(spec: str, extra: list, timeout: float = 120.0):
    p = subprocess.Popen([sys.executable, "-m", "kiln.cli", "serve", spec, "--host", HOST,
                          "--port", "0", *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if sel.select(0.5):
            m = re.search(r"http://127\.0\.0\.1:(\d+)/v1/models/([^ ]+)", p.stdout.readline())
            if m:
                return p, int(m.group(1)), m.group(2)
    p.kill()
    raise RuntimeError("kiln serve did not start")


def input_width(port: int, name: str) -> list:
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.request("GET", f"/v1/models/{name}/metadata")
    meta = json.loads(c.getresponse().read())
    c.close()
    inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    if len(inputs) != 1:
        raise SystemExit("the benchmark sends one input; give a single-input model")
    dims = next(iter(inputs.values()))["tensor_shape"]["dim"]
    return [int(d["size"]) for d in dims[1:]]


def drive(port: int, path: str, bodies: list, n: int, clients: int) -> tuple:
    latencies = [0.0] * n
    errors = [0]

    def client(k):
        c = http.client.HTTPConnection(HOST, port, timeout=60)
        for i in range(k, n, clients):
            t0 = time.perf_counter()
            c.request("POST", path, body=bodies[i % len(bodies)])
            r = c.getresponse()
            r.read()
            latencies[i] = time.perf_counter() - t0
            if r.status != 200:
                errors[0] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, np.array(latencies), errors[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mlp", help="mlp (784-512-512-10, default), wide "
                                                 "(64-2048-2048-10) or a SPEC to serve")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=1, help="rows per request")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--batch-timeout-ms", type=float, default=2.0)
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()
    spec = args.model
    if spec in MODELS:
        inputs, hidden = MODELS[spec]
        path = os.path.join(tmp.name, f"{spec}.py")
        with open(path, "w") as f:
            f.write(MODEL_FILE.format(inputs=inputs, hidden=hidden))
        spec = f"{path}:model"
    configs = [("no batching", ["--workers", str(args.workers)]),
               (f"batching (max {args.max_batch} rows, {args.batch_timeout_ms:g} ms)",
                ["--workers", str(args.workers), "--max-batch", str(args.max_batch),
                 "--batch-timeout-ms", str(args.batch_timeout_ms)])]
    print(f"model {args.model}: {args.requests} requests of {args.rows} row(s), {args.clients} "
          f"concurrent clients, {args.workers} worker(s), {os.cpu_count()} CPUs")
    print(f"{'configuration':42s} {'req/s':>8s} {'rows/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for label, extra in configs:
        proc, port, name = start(spec, extra)
        try:
            shape = input_width(port, name)
            rng = np.random.default_rng(0)
            bodies = [json.dumps({"instances": rng.standard_normal((args.rows, *shape))
                                  .astype(np.float32).tolist()}).encode() for _ in range(64)]
            path = f"/v1/models/{name}:predict"
            drive(port, path, bodies, min(200, args.requests), args.clients)         # warm-up
            wall, lat, errors = drive(port, path, bodies, args.requests, args.clients)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        p50, p99 = np.percentile(lat, [50, 99]) * 1e3
        note = f"  ({errors} errors)" if errors else ""
        print(f"{label:42s} {args.requests / wall:8.0f} {args.requests * args.rows / wall:9.0f} "
              f"{p50:8.2f} {p99:8.2f}{note}", flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
