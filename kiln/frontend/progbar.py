"""The progress bar of ``fit``/``evaluate``/``predict`` (Keras 3's ``utils.Progbar``).

On a terminal (``isatty``) it redraws one line in place (backspaces and ``\\r``) with
Keras' colours -- bold step count, green done part of a bar of 20 U+2501, bold
time -- and the ETA while running::

    3/3 ━━━━━━━━━━━━━━━━━━━━ 3s 721ms/step - loss: 0.9285 - mae: 0.7916

When the output is not a terminal (a log file, a captured stream) it prints only the
final line of each bar, without escape codes (Keras would print every intermediate
update on its own line). ``verbose=2`` prints one line per epoch::

    4/4 - 1s - 249ms/step - loss: 0.9335 - mae: 0.8182

Metric values shown while running are averaged over the steps so far, weighted by
steps (Keras does this to the running values fit reports); the final line shows the
values given at the end (the epoch's logs).
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

BAR = "\u2501"


def _stream():
    return sys.stdout


def is_dynamic(stream) -> bool:
    return (hasattr(stream, "isatty") and stream.isatty()) or "ipykernel" in sys.modules


class Progbar:
    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None,
                 unit_name="step", stream=None):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self.stream = stream
        self._dynamic = is_dynamic(self.out)
        self._seen_so_far = 0
        self._values: dict = {}
        self._values_order: list = []
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_total_width = 0

    @property
    def out(self):
        return self.stream if self.stream is not None else _stream()

    def _write(self, s: str):
        out = self.out
        out.write(s)
        out.flush()

    def update(self, current, values=None, finalize=None):
        if finalize is None:
            finalize = False if self.target is None else current >= self.target
        for k, v in values or []:
            if k not in self._values_order:
                self._values_order.append(k)
            if k not in self.stateful_metrics:
                if finalize:
                    self._values[k] = [v, 1]
                else:
                    base = max(current - self._seen_so_far, 1)
                    if k not in self._values:
                        self._values[k] = [v * base, base]
                    else:
                        self._values[k][0] += v * base
                        self._values[k][1] += base
            else:
                self._values[k] = [v, 1]
        self._seen_so_far = current
        now = time.time()
        per_unit = self._estimate_step_duration(current, now)

        if self.verbose == 1:
            if not self._dynamic and not finalize:
                return          # logs get only the final line
            if now - self._last_update < self.interval and not finalize:
                return
            self._write(self._line(current, now, per_unit, finalize))
        elif self.verbose == 2 and finalize and self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            info = f"{current:{digits}d}/{self.target} - {now - self._start:.0f}s"
            info += f" -{self._format_time(per_unit)}"
            for k in self._values_order:
                info += f" - {k}:{self._fmt(k, abs_=False)}"
            self._write(info + "\n")
        self._last_update = now

    def _fmt(self, k, abs_=True) -> str:
        total, count = self._values[k]
        avg = float(np.mean(total)) / max(1, count)
        big = abs(avg) > 1e-3 if abs_ else avg > 1e-3
        return f" {avg:.4f}" if big else f" {avg:.4e}"

    def _line(self, current, now, per_unit, finalize) -> str:
        dyn = self._dynamic

        def style(s, code):
            return f"\x1b[{code}m{s}\x1b[0m" if dyn else s
        msg = ("\b" * self._prev_total_width + "\r") if dyn else ""
        if self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            bar = style(f"{current:{digits}d}/{self.target}", "1") + " "
            done = int(self.width * float(current) / self.target)
            visible = len(f"{current:{digits}d}/{self.target}") + 1 + self.width
            if done > 0:
                bar += style(BAR * done, "32")
            bar += style(BAR * (self.width - done), "37")
        else:
            bar = f"{current:7d}/Unknown"
            visible = len(bar)
        if self.target is not None and self.target > 0 and not finalize:
            eta = per_unit * (self.target - current)
            if eta > 3600:
                t = "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
            elif eta > 60:
                t = "%d:%02d" % (eta // 60, eta % 60)
            else:
                t = "%ds" % eta
        else:
            t = f"{now - self._start:.0f}s"
        info = " " + style(t, "1") + self._format_time(per_unit)
        plain = 1 + len(t) + len(self._format_time(per_unit))
        for k in self._values_order:
            part = f" - {k}:{self._fmt(k)}"
            info += part
            plain += len(part)
        total = visible + plain
        line = msg + bar + info
        if dyn and self._prev_total_width > total:
            line += " " * (self._prev_total_width - total)
        if finalize:
            line += "\n"
        self._prev_total_width = total
        return line

    def _format_time(self, per_unit) -> str:
        if per_unit >= 1 or per_unit == 0:
            return f" {per_unit:.0f}s/{self.unit_name}"
        if per_unit >= 1e-3:
            return f" {per_unit * 1000.0:.0f}ms/{self.unit_name}"
        return f" {per_unit * 1000000.0:.0f}us/{self.unit_name}"

    def _estimate_step_duration(self, current, now) -> float:
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit
