"""Per-kernel time of a compiled model: where a call's time goes.

``kiln.compile(model, profile=True)`` (or ``KILN_PROFILE=1`` in the environment, which
also instruments the executables ``fit`` compiles) generates an entry that reads the
CPU's cycle counter (``llvm.readcyclecounter``) around every kernel call and adds the
difference to a per-kernel counter in the module; nothing else changes in the code.
``kiln.profile.report(exe)`` turns the counters into a table: one row per kernel in
call order (its name, what it computes, how many calls, time per call and share of the
entry's time), then the rest of the entry (output and state copies). Cycles are
converted to seconds with a calibration of the counter against ``time.perf_counter``.

    exe = kiln.compile(model, profile=True)
    for _ in range(100):
        exe(x)
    print(kiln.profile.report(exe))

Multi-threaded kernels are timed from the calling thread, so a row is the wall time
the kernel took, whatever the pool did inside it. A ``scan``'s row is followed by
rows of its body's kernels (indented; their calls count every step), whose times
are part of the scan's.
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass

import numpy as np

_HZ: float | None = None


def enabled() -> bool:
    """``KILN_PROFILE`` set to anything but 0/false/no/off."""
    return os.environ.get("KILN_PROFILE", "0").lower() not in ("", "0", "false", "no", "off")


@dataclass
class Row:
    index: str           # "3", or "3.1" for kernel 1 of kernel 3's region (a scan body)
    kernel: str
    what: str            # the op, or for a fusion group the ops it fuses
    shape: str           # the (first) result's type
    calls: int
    seconds: float       # in total over all calls

    @property
    def per_call(self) -> float:
        return self.seconds / self.calls if self.calls else 0.0


def _counters(exe, lowered=None) -> np.ndarray:
    lowered = lowered or exe._lowered
    name = getattr(lowered, "profile", None)
    if not name:
        raise ValueError("this executable was compiled without profiling: "
                         "kiln.compile(..., profile=True) or KILN_PROFILE=1")
    n = 2 * (len(lowered.kernels) + 1)
    addr = exe._compiled.engine.get_global_value_address(name)
    return np.ctypeslib.as_array((ctypes.c_int64 * n).from_address(addr))


def cycles_per_second(exe) -> float:
    """The cycle counter's rate, measured once per process (a 20 ms busy wait)."""
    global _HZ
    if _HZ is None:
        read = ctypes.CFUNCTYPE(ctypes.c_int64)(exe._compiled.address(
            exe._lowered.profile.replace("profile", "cycles")))
        c0, t0 = read(), time.perf_counter()
        while time.perf_counter() - t0 < 0.02:
            pass
        c1, t1 = read(), time.perf_counter()
        _HZ = (c1 - c0) / (t1 - t0)
    return _HZ


def _what(node) -> str:
    if node.op.name == "fusion":
        ops = [n.op.name for n in node.regions[0].nodes]
        return "fusion(" + ",".join(ops) + ")"
    return node.op.name


def rows(exe) -> list:
    """Rows of every kernel (each followed by its region's kernels), then ``(rest of
    the entry)``, from the counters so far."""
    hz = cycles_per_second(exe)
    regions = exe._lowered.regions or {}
    out = []

    def kernel_rows(lowered, prefix, depth):
        c = _counters(exe, lowered)
        for i, (kname, node) in enumerate(lowered.kernels):
            out.append(Row(f"{prefix}{i}", "  " * depth + kname.rsplit(".", 1)[-1] if depth else kname,
                           _what(node), str(node.outputs[0].type), int(c[2 * i + 1]), c[2 * i] / hz))
            if kname in regions:
                kernel_rows(regions[kname], f"{prefix}{i}.", depth + 1)
        return c

    c = kernel_rows(exe._lowered, "", 0)
    k = len(exe._lowered.kernels)
    inside = sum(r.seconds for r in out if "." not in r.index)
    out.append(Row(str(k), "(rest of the entry)", "output and state copies, addressing",
                   "", int(c[2 * k + 1]), max(c[2 * k] / hz - inside, 0.0)))
    return out


def reset(exe) -> None:
    _counters(exe)[:] = 0
    for lowered in (exe._lowered.regions or {}).values():
        _counters(exe, lowered)[:] = 0


def report(exe, top: int | None = None) -> str:
    """A text table of the counters: kernels in call order (or the ``top`` slowest)."""
    rs = rows(exe)
    top_rows = [r for r in rs if "." not in r.index]
    total = sum(r.seconds for r in top_rows)
    calls = max((r.calls for r in top_rows), default=0)
    shown = sorted(rs, key=lambda r: -r.seconds)[:top] if top else rs
    lines = [f"{'#':>5}  {'kernel':<28} {'calls':>7} {'us/call':>10} {'%':>6}  what -> result",
             "-" * 100]
    for r in shown:
        pct = 100 * r.seconds / total if total else 0.0
        what = r.what if len(r.what) <= 60 else r.what[:57] + "..."
        lines.append(f"{r.index:>5}  {r.kernel:<28} {r.calls:>7} {1e6 * r.per_call:>10.1f} "
                     f"{pct:>6.1f}  {what} -> {r.shape}")
    per = total / calls if calls else 0.0
    lines.append("-" * 100)
    lines.append(f"entry: {calls} calls, {1e6 * per:.1f} us per call "
                 f"(counter at {cycles_per_second(exe) / 1e9:.2f} GHz)")
    return "\n".join(lines)


__all__ = ["Row", "rows", "report", "reset", "enabled", "cycles_per_second"]
