"""Helpers for the serving tests: model files, a `kiln serve` subprocess on 127.0.0.1
(port 0: the server picks a free port and prints it), and plain http.client requests.
Every wait is bounded."""
from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

HOST = "127.0.0.1"
MLP_FILE = textwrap.dedent('''
    import numpy as np
    import kiln

    def model(seed=0):
        m = kiln.Sequential([kiln.Input(shape=(6,)),
                             kiln.layers.Dense(16, activation="relu"),
                             kiln.layers.Dense(4, activation="softmax")])
        rng = np.random.default_rng(seed)
        m.set_weights([(rng.standard_normal(w.shape) * 0.5).astype("float32")
                       for w in m.get_weights()])
        return m
''')

MULTI_IO_FILE = textwrap.dedent('''
    import numpy as np
    from kiln.ir import Graph, TensorType
    from kiln.ir.types import DType

    def build():
        """Inputs a: f32[N,3], b: f32[N,2], ids: i32[N,1]; outputs scores (softmax),
        hidden (relu) and active (bool)."""
        rng = np.random.default_rng(1)
        g = Graph("two_tower")
        a = g.add_input("a", TensorType(("N", 3)))
        b = g.add_input("b", TensorType(("N", 2)))
        ids = g.add_input("ids", TensorType(("N", 1), DType.i32))
        wa = g.add_param("wa", rng.standard_normal((3, 4)).astype(np.float32))
        wb = g.add_param("wb", rng.standard_normal((2, 4)).astype(np.float32))
        half = g.add_param("half", np.full((4,), 0.5, np.float32))
        h = g.op("relu", g.op("matmul", a, wa))
        z = g.op("add", g.op("add", h, g.op("matmul", b, wb)), g.op("cast", ids, dtype=DType.f32))
        g.set_outputs([g.op("softmax", z, axis=-1), h, g.op("greater", h, half)])
        g.output_names = ["scores", "hidden", "active"]
        return g
''')


def load(spec):
    from kiln.cli import load_spec
    return load_spec(spec)


class ServerProcess:
    """`python -m kiln.cli serve ARGS --host 127.0.0.1 --port 0` in a subprocess."""

    def __init__(self, *args, start_timeout=60.0, log_dir=None):
        self.args = [sys.executable, "-m", "kiln.cli", "serve", *map(str, args),
                     "--host", HOST, "--port", "0"]
        self.log_path = os.path.join(log_dir or ".", f"serve-{os.getpid()}-{id(self)}.log")
        self._log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, bufsize=1)
        self.lines = []
        self.port = None
        deadline = time.monotonic() + start_timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while self.port is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    self.kill()
                    raise RuntimeError(f"kiln serve did not start: {self.args}\n{self.log()}")
                if sel.select(timeout=min(remaining, 0.5)):
                    line = self.proc.stdout.readline()
                    self.lines.append(line)
                    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
                    if m:
                        self.port = int(m.group(1))
        finally:
            sel.close()

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout=20.0) -> int:
        """SIGTERM, then wait (bounded); SIGKILL if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        try:
            self.terminate()
        finally:
            self.proc.stdout.close()
            self._log.close()
            try:
                os.unlink(self.log_path)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Response:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self):
        return json.loads(self.raw)

    @property
    def error(self) -> str:
        return self.json["error"]


def request(port, method, path, body=None, headers=None, conn=None, timeout=15.0) -> Response:
    """One HTTP request (a dict body is sent as JSON); a new connection unless ``conn``."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    own = conn is None
    c = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Response(r.status, dict(r.getheaders()), r.read())
    finally:
        if own:
            c.close()


def as_f32(x):
    return np.asarray(x, dtype=np.float32)
