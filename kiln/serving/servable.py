"""A servable: one version of one model, compiled, with its serving signature.

The signature is ``serving_default``: the graph's inputs (named as the graph names
them) and outputs (``output_names`` of the loaded object when it has them, else
``output_0``, ``output_1``, ...). ``prepare`` checks a request's tensors against it
(rank, static dimensions, one value per symbol across inputs) so that a request that
reaches the compiled code cannot fail there; ``run`` makes the native call on one of
``workers`` executables (each with its own arena, so native calls run in parallel:
ctypes releases the GIL; the generated code may itself use several threads).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from ..ir.types import BATCH, is_symbol
from .errors import invalid
from .json_tensor import TF_DTYPES

SIGNATURE = "serving_default"


@dataclass
class Prepared:
    """A validated request: arrays in input order, its rows (the batch symbol's value,
    or None when the model cannot be batched) and the key of requests it may share a
    native call with (the shapes past dimension 0)."""
    arrays: list
    rows: int | None
    key: tuple


class _FairPool:
    """Executables handed out first come, first served (a lock's waiters are not served
    in order, which under load gives some requests very long waits)."""

    def __init__(self, items):
        self._free = list(items)
        self._waiters: deque = deque()
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._free:
                return self._free.pop()
            waiter = [threading.Event(), None]
            self._waiters.append(waiter)
        waiter[0].wait()
        return waiter[1]

    def put(self, item):
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter[1] = item
                waiter[0].set()
            else:
                self._free.append(item)


def _output_names(obj, n: int) -> list:
    names = getattr(obj, "output_names", None)
    if (isinstance(names, (list, tuple)) and len(names) == n
            and all(isinstance(s, str) and s for s in names) and len(set(names)) == n):
        return list(names)
    return [f"output_{i}" for i in range(n)]


class Servable:
    def __init__(self, name: str, version: int, obj, workers: int = 1):
        from ..runtime import compile as kiln_compile
        self.name = name
        self.version = version
        exe = kiln_compile(obj)
        self.input_names = list(exe.input_names)
        self.input_types = list(exe.input_types)
        self.output_types = list(exe.output_types)
        self.output_names = _output_names(obj, len(self.output_types))
        for t in self.input_types + self.output_types:
            if t.dtype.np not in TF_DTYPES:
                raise ValueError(f"model {name} version {version}: dtype {t.dtype} cannot be "
                                 f"served")
        self.specs = [(n, t.dtype.np) for n, t in zip(self.input_names, self.input_types)]
        self.batchable = bool(self.input_types) and all(
            t.rank >= 1 and t.shape[0] == BATCH and BATCH not in t.shape[1:]
            for t in self.input_types + self.output_types)
        self.workers = max(1, int(workers))
        # one executable per worker: each has its own arena, so their native calls may run
        # at once (compiling again is cheap: kiln's compile cache has the machine code)
        self.executables = [exe] + [kiln_compile(obj) for _ in range(self.workers - 1)]
        self._free = _FairPool(self.executables)
        self.batcher = None            # set by the server when batching is on

    # -- requests -----------------------------------------------------------------------
    def prepare(self, tensors: dict) -> Prepared:
        """Check request tensors against the signature; INVALID_ARGUMENT when they differ."""
        bindings, where = {}, {}
        arrays = []
        for name, t in zip(self.input_names, self.input_types):
            a = tensors[name]
            want = "[" + ",".join("-1" if is_symbol(d) else str(d) for d in t.shape) + "]"
            got = "[" + ",".join(str(d) for d in a.shape) + "]"
            if a.ndim != t.rank or any(not is_symbol(d) and d != n for d, n in zip(t.shape, a.shape)):
                raise invalid(f"Input '{name}' has shape {got}, but the model expects shape {want}")
            for axis, (d, n) in enumerate(zip(t.shape, a.shape)):
                if not is_symbol(d):
                    continue
                if d in bindings and bindings[d] != n:
                    other, other_axis = where[d]
                    raise invalid(f"Input '{name}' has {n} in dimension {axis}, but input "
                                  f"'{other}' has {bindings[d]} in dimension {other_axis}; "
                                  f"both are the model's dimension {d}")
                bindings[d] = n
                where[d] = (name, axis)
            arrays.append(a)
        rows = bindings.get(BATCH) if self.batchable else None
        key = tuple(a.shape[1:] for a in arrays)
        return Prepared(arrays, rows, key)

    def run(self, arrays: list) -> list:
        """One native call on a free executable; the outputs as a list."""
        exe = self._free.get()
        try:
            outs = exe(*arrays)
        except ValueError as e:        # the executable's own input checks (prepare ran first)
            raise invalid(str(e)) from None
        finally:
            self._free.put(exe)
        return list(outs) if isinstance(outs, tuple) else [outs]

    def predict(self, prepared: Prepared) -> list:
        if self.batcher is not None and prepared.rows is not None:
            return self.batcher.submit(prepared)
        return self.run(prepared.arrays)

    # -- status and metadata ------------------------------------------------------------
    def status_entry(self) -> dict:
        return {"version": str(self.version), "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}

    def signature_def(self) -> dict:
        def info(t, tensor_name):
            return {"dtype": TF_DTYPES[t.dtype.np][0],
                    "tensor_shape": {"dim": [{"size": "-1" if is_symbol(d) else str(d), "name": ""}
                                             for d in t.shape],
                                     "unknown_rank": False},
                    "name": tensor_name}
        return {SIGNATURE: {
            "inputs": {n: info(t, f"{SIGNATURE}_{n}:0")
                       for n, t in zip(self.input_names, self.input_types)},
            "outputs": {n: info(t, f"StatefulPartitionedCall:{i}")
                        for i, (n, t) in enumerate(zip(self.output_names, self.output_types))},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }}

    def metadata(self) -> dict:
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": self.signature_def()}}}
