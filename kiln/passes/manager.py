"""The pass registry, named pipelines, and the PassManager that runs them.

A pass is a plain function ``Graph -> Graph`` registered by name with
``@register_pass("name")``; it returns a new graph and leaves its input alone.
Everything *around* a pass -- verification, timing, keeping the IR of every stage,
dumping it to files -- is an instrument (in the spirit of TVM's PassInstrument)
that the PassManager calls before and after each pass, so passes stay small.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable, Iterable

from ..ir import Graph, VerifyError, verify

PassFn = Callable[[Graph], Graph]

_PASSES: dict[str, PassFn] = {}

#: Named pipelines: lists of registered pass names, run in order.
PIPELINES: dict[str, list[str]] = {
    "inference": ["simplify", "constfold", "layout", "constfold", "dce", "fusion", "memory"],
    # a training step (kiln/runtime/training.py): the graph already holds forward, loss,
    # backward and optimizer update; the params it updates are variables to every pass,
    # so constfold/layout only touch the weights it does not train (frozen layers)
    "training": ["simplify", "layout", "constfold", "dce", "fusion", "memory"],
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def register_pass(name: str):
    """Decorator registering ``fn: Graph -> Graph`` as the pass ``name``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"pass name must be an identifier (letters, digits, '_', '.', '-'), "
                         f"got {name!r}")

    def deco(fn: PassFn) -> PassFn:
        if name in _PASSES:
            raise ValueError(f"pass {name!r} is registered twice")
        _PASSES[name] = fn
        return fn
    return deco


def unregister_pass(name: str):
    """Remove a registered pass (tests register throwaway passes)."""
    _PASSES.pop(name, None)


def known_passes() -> list[str]:
    return sorted(_PASSES)


def get_pass(name: str) -> PassFn:
    try:
        return _PASSES[name]
    except KeyError:
        raise ValueError(f"unknown pass {name!r} (known passes: "
                         f"{', '.join(known_passes()) or 'none'})") from None


def pipeline(name: str) -> list[str]:
    """The pass names of the named pipeline (a fresh list)."""
    try:
        return list(PIPELINES[name])
    except KeyError:
        raise ValueError(f"unknown pipeline {name!r} (known pipelines: "
                         f"{', '.join(sorted(PIPELINES))})") from None


# -- instruments ------------------------------------------------------------------------

class Instrument:
    """Hooks called around every pass. ``stage`` sees the input graph (index 0, named
    after ``first``) and then the output of every pass."""

    def start(self, manager: "PassManager"):
        pass

    def stage(self, index: int, name: str, graph: Graph):
        pass

    def after_pass(self, name: str, graph: Graph, seconds: float):
        pass


class VerifyAfterEach(Instrument):
    """Runs ``kiln.ir.verify`` on the input and after every pass; an error names the
    stage (the pass) that produced the broken graph."""

    def stage(self, index, name, graph):
        try:
            verify(graph)
        except VerifyError as e:
            if index == 0:
                raise VerifyError(f"the input graph (stage {name!r}) is invalid: {e}") from None
            raise VerifyError(f"pass {name!r} produced an invalid graph: {e}") from None


class Timing(Instrument):
    def start(self, manager):
        manager.timings = []
        self.manager = manager

    def after_pass(self, name, graph, seconds):
        self.manager.timings.append((name, seconds))


class KeepStages(Instrument):
    def start(self, manager):
        manager.stages = []
        self.manager = manager

    def stage(self, index, name, graph):
        self.manager.stages.append((name, graph))


class DumpIR(Instrument):
    """Writes the IR text of every stage to ``dir/NN-name.kir``."""

    def __init__(self, dir):
        self.dir = Path(dir)

    def start(self, manager):
        self.dir.mkdir(parents=True, exist_ok=True)

    def stage(self, index, name, graph):
        (self.dir / f"{index:02d}-{name}.kir").write_text(str(graph))


# -- the manager ------------------------------------------------------------------------

class PassManager:
    """Runs passes in order with instruments around them.

    ``passes``: pass names (or a pipeline name as one string). ``verify``: verify the
    input and every pass's output. ``dump_dir``: write each stage's IR there (default:
    the ``KILN_DUMP_DIR`` environment variable, read when ``run`` starts).
    ``instruments``: extra ``Instrument`` objects, called after the built-in ones.
    """

    def __init__(self, passes: str | Iterable[str], verify: bool = True, dump_dir=None,
                 instruments: Iterable[Instrument] = ()):
        names = pipeline(passes) if isinstance(passes, str) else list(passes)
        self.passes = [(n, get_pass(n)) for n in names]  # unknown names fail here
        self.verify = verify
        self.dump_dir = dump_dir
        self.instruments = list(instruments)
        self.timings: list[tuple[str, float]] = []
        self.stages: list[tuple[str, Graph]] = []

    def _instruments(self) -> list[Instrument]:
        ins: list[Instrument] = [KeepStages(), Timing()]
        dump = self.dump_dir if self.dump_dir is not None else os.environ.get("KILN_DUMP_DIR") or None
        if dump is not None:
            ins.append(DumpIR(dump))     # before verification: a broken stage is dumped too
        if self.verify:
            ins.append(VerifyAfterEach())
        return ins + self.instruments

    def run(self, graph: Graph, first: str = "lower") -> Graph:
        ins = self._instruments()
        for i in ins:
            i.start(self)
        for i in ins:
            i.stage(0, first, graph)
        for k, (name, fn) in enumerate(self.passes, start=1):
            t0 = time.perf_counter()
            out = fn(graph)
            dt = time.perf_counter() - t0
            if not isinstance(out, Graph):
                raise TypeError(f"pass {name!r} returned {type(out).__name__}, not a Graph")
            graph = out
            for i in ins:
                i.after_pass(name, graph, dt)
            for i in ins:
                i.stage(k, name, graph)
        return graph

    def report(self) -> str:
        """Per-pass wall times of the last run, as a small table."""
        if not self.timings:
            return "no passes run"
        width = max(len("total"), *(len(n) for n, _ in self.timings))
        total = sum(s for _, s in self.timings)
        lines = [f"{'pass':<{width}}  {'ms':>9}"]
        lines += [f"{n:<{width}}  {s * 1e3:9.3f}" for n, s in self.timings]
        lines.append(f"{'total':<{width}}  {total * 1e3:9.3f}")
        return "\n".join(lines)
