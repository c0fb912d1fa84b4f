"""Dynamic batching: concurrent requests share one native call.

Requests are validated before they get here (``Servable.prepare``), so a batch never
holds a request that the compiled code would reject. The scheme is TF Serving's: one
batch is open at a time; it closes when it holds ``max_batch`` rows or when
``timeout`` has passed since its first request arrived, and a free worker runs it.

- ``workers`` threads each loop: take the *forming* lock, build a batch (wait for a
  first request, then add queued requests with the same shapes past dimension 0 while
  they fit in ``max_batch`` rows, until full or the deadline), release the lock, run.
  So a batch is formed only while a worker is free to run it; while every worker is
  busy, requests accumulate and the next batch is fuller (batching adapts to load).
- A request larger than ``max_batch`` rows runs alone (it is not split).
- The inputs are concatenated along dimension 0, the outputs split back into views.
  Should a batched call fail, each of its requests is run again alone, so one
  request's failure never fails the others.
- ``close()`` (the server is stopping): queued requests run at once, without waiting
  for their batch to fill, and later ones run alone; the workers then stop.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np



class _Pending:
    __slots__ = ("prepared", "arrived", "event", "outputs", "error")

    def __init__(self, prepared):
        self.prepared = prepared
        self.arrived = time.monotonic()
        self.event = threading.Event()
        self.outputs = None
        self.error = None


class Batcher:
    def __init__(self, servable, max_batch: int, timeout_s: float):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.servable = servable
        self.max_batch = int(max_batch)
        self.timeout = max(0.0, float(timeout_s))
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._forming = threading.Lock()
        self._closed = False
        self.batches = 0               # native calls made (for benchmarks and tests)
        self.requests = 0
        self._threads = [threading.Thread(target=self._work, daemon=True,
                                          name=f"kiln-batch-{servable.name}-{i}")
                         for i in range(servable.workers)]
        for t in self._threads:
            t.start()

    def submit(self, prepared) -> list:
        """Queue a validated request and wait for its outputs."""
        p = _Pending(prepared)
        with self._cv:
            queued = not self._closed
            if queued:
                self._queue.append(p)
                self._cv.notify()
        if not queued:                                     # stopping: run it alone
            return self.servable.run(prepared.arrays)
        p.event.wait()
        if p.error is not None:
            raise p.error
        return p.outputs

    def close(self):
        """Run what is queued now, without waiting for batches to fill; requests
        submitted from now on run alone."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def join(self, timeout: float | None = None):
        for t in self._threads:
            t.join(timeout)

    # -- workers ------------------------------------------------------------------------
    def _work(self):
        while True:
            with self._forming:
                batch = self._gather()
            if batch is None:
                return
            self._execute(batch)

    def _gather(self):
        with self._cv:
            while not self._queue:
                if self._closed:
                    return None
                self._cv.wait()
            first = self._queue.popleft()
            batch, rows, key = [first], first.prepared.rows, first.prepared.key
            deadline = first.arrived + self.timeout
            while rows < self.max_batch:
                i = 0
                while i < len(self._queue) and rows < self.max_batch:
                    p = self._queue[i]
                    if p.prepared.key == key and rows + p.prepared.rows <= self.max_batch:
                        del self._queue[i]
                        batch.append(p)
                        rows += p.prepared.rows
                    else:
                        i += 1
                remaining = deadline - time.monotonic()
                if rows >= self.max_batch or remaining <= 0 or self._closed:
                    break
                self._cv.wait(remaining)
            self.batches += 1
            self.requests += len(batch)
            return batch

    def _execute(self, batch: list):
        try:
            if len(batch) == 1:
                batch[0].outputs = self.servable.run(batch[0].prepared.arrays)
            else:
                n_inputs = len(batch[0].prepared.arrays)
                arrays = [np.concatenate([p.prepared.arrays[k] for p in batch])
                          for k in range(n_inputs)]
                outs = self.servable.run(arrays)
                start = 0
                for p in batch:
                    stop = start + p.prepared.rows
                    p.outputs = [o[start:stop] for o in outs]
                    start = stop
        except BaseException as e:                       # noqa: BLE001 - reported per request
            if len(batch) == 1:
                batch[0].error = e
            else:
                for p in batch:                          # alone, so only the culprit fails
                    try:
                        p.outputs = self.servable.run(p.prepared.arrays)
                    except BaseException as e1:          # noqa: BLE001
                        p.error = e1
        finally:
            for p in batch:
                p.event.set()
