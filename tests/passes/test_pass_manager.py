"""PassManager: registry, pipelines, verification naming the guilty pass, timings,
stages and IR dumps."""
import os

import numpy as np
import pytest

from kiln.ir import Graph, VerifyError, parse
from kiln.ir.graph import Node
from kiln.passes import (PIPELINES, Instrument, PassManager, get_pass, known_passes, pipeline,
                         register_pass, unregister_pass)

from .util import parse_with

TEXT = """
graph @g(%x: f32[N,3]) -> f32[N,3] {
  param %w: f32[3,3]
  param %b: f32[3]
  %0: f32[3] = exp(%b)
  %1: f32[N,3] = matmul(%x, %w)
  %2: f32[N,3] = add(%1, %0)
  %3: f32[N,3] = relu(%2)
  return %2
}
"""


def graph():
    return parse_with(TEXT, w=np.eye(3), b=[0, 1, 2])


@pytest.fixture
def temp_passes():
    """Register throwaway passes for one test; unregister them afterwards."""
    names = []

    def reg(name, fn):
        register_pass(name)(fn)
        names.append(name)
        return name
    yield reg
    for n in names:
        unregister_pass(n)
    assert not set(names) & set(known_passes())


def break_graph(g: Graph) -> Graph:
    """A buggy pass: rewires relu to read a value of another graph."""
    out = g.rebuild()
    other = g.rebuild()
    n = out.nodes[-1]
    out.nodes[-1] = Node(n.op, (other.nodes[0].output,), n.attrs, [n.output.type])
    return out


def test_registry_and_pipelines():
    assert {"simplify", "constfold", "dce", "fusion", "memory"} <= set(known_passes())
    assert pipeline("inference") == PIPELINES["inference"]
    assert set(pipeline("inference")) <= set(known_passes())
    p = pipeline("inference")
    p.append("x")
    assert "x" not in PIPELINES["inference"]   # pipeline() hands out a copy
    with pytest.raises(ValueError, match=r"unknown pass 'cse' \(known passes: .*constfold, dce"):
        get_pass("cse")
    with pytest.raises(ValueError, match=r"unknown pipeline 'train' \(known pipelines: inference, "
                                         r"training\)"):
        pipeline("train")
    with pytest.raises(ValueError, match=r"unknown pass 'nope'"):
        PassManager(["dce", "nope"])                          # fails before any run
    with pytest.raises(ValueError, match=r"pass 'dce' is registered twice"):
        register_pass("dce")(lambda g: g)
    with pytest.raises(ValueError, match=r"pass name must be an identifier"):
        register_pass("two words")


def test_run_records_stages_and_timings():
    g = graph()
    pm = PassManager(["constfold", "dce"])
    out = pm.run(g)
    assert [n for n, _ in pm.stages] == ["lower", "constfold", "dce"]
    assert pm.stages[0][1] is g and pm.stages[-1][1] is out
    assert [n for n, _ in pm.timings] == ["constfold", "dce"]
    assert all(isinstance(s, float) and s >= 0 for _, s in pm.timings)
    rep = pm.report()
    lines = rep.splitlines()
    assert lines[0].split() == ["pass", "ms"]
    assert [ln.split()[0] for ln in lines[1:]] == ["constfold", "dce", "total"]
    assert float(lines[-1].split()[1]) == pytest.approx(sum(s for _, s in pm.timings) * 1e3, abs=2e-3)
    assert str(g) == parse(TEXT).__str__()                   # the input is untouched
    assert "exp" not in str(out) and "relu" not in str(out)
    # a second run starts afresh
    pm.run(graph(), first="frontend")
    assert [n for n, _ in pm.stages] == ["frontend", "constfold", "dce"] and len(pm.timings) == 2


def test_report_before_any_run():
    assert PassManager([]).report() == "no passes run"


def test_dump_dir_writes_every_stage(tmp_path):
    d = tmp_path / "nested" / "dumps"
    pm = PassManager(["constfold", "dce"], dump_dir=d)
    pm.run(graph())
    files = sorted(os.listdir(d))
    assert files == ["00-lower.kir", "01-constfold.kir", "02-dce.kir"]
    for f, (name, stage) in zip(files, pm.stages):
        text = (d / f).read_text()
        assert text == str(stage)
        assert str(parse(text)) == text


def test_dump_names_repeat_passes_by_position(tmp_path):
    pm = PassManager(["dce", "constfold", "dce"], dump_dir=str(tmp_path))
    pm.run(graph(), first="frontend")
    assert sorted(os.listdir(tmp_path)) == ["00-frontend.kir", "01-dce.kir", "02-constfold.kir", "03-dce.kir"]


def test_kiln_dump_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DUMP_DIR", str(tmp_path / "env"))
    PassManager(["constfold", "dce"]).run(graph())
    assert sorted(os.listdir(tmp_path / "env")) == ["00-lower.kir", "01-constfold.kir", "02-dce.kir"]
    # an explicit dump_dir wins over the environment
    PassManager(["dce"], dump_dir=tmp_path / "explicit").run(graph())
    assert sorted(os.listdir(tmp_path / "explicit")) == ["00-lower.kir", "01-dce.kir"]
    assert len(os.listdir(tmp_path / "env")) == 3


def test_no_dumps_without_dump_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_DUMP_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    PassManager(["constfold", "dce"]).run(graph())
    assert os.listdir(tmp_path) == []


def test_broken_pass_is_named_by_the_verifier(temp_passes, tmp_path):
    name = temp_passes("test_breaker", break_graph)
    pm = PassManager(["constfold", name, "dce"], dump_dir=tmp_path)
    with pytest.raises(VerifyError, match=r"^pass 'test_breaker' produced an invalid graph: graph @g: node "
                                          r"`.* = relu\(%<undefined>\)`: operand 0 .* is used before it is defined"):
        pm.run(graph())
    assert [n for n, _ in pm.stages] == ["lower", "constfold", "test_breaker"]
    # the broken stage was dumped before verification stopped the run
    assert sorted(os.listdir(tmp_path)) == ["00-lower.kir", "01-constfold.kir", "02-test_breaker.kir"]
    # without verification the broken graph goes through
    out = PassManager([name], verify=False).run(graph())
    assert isinstance(out, Graph)


def test_wrongly_typed_output_is_caught(temp_passes):
    def retype(g):
        out = g.rebuild()
        out.nodes[0].outputs[0].type = out.nodes[0].outputs[0].type.with_shape((4,))
        return out
    name = temp_passes("test_retype", retype)
    with pytest.raises(VerifyError, match=r"pass 'test_retype' produced an invalid graph: .*output types "
                                          r"f32\[4\] do not match the inferred f32\[3\]"):
        PassManager(["dce", name]).run(graph())


def test_invalid_input_graph_is_reported_as_such():
    g = graph()
    g.param_values["w"] = np.eye(4, dtype=np.float32)
    with pytest.raises(VerifyError, match=r"^the input graph \(stage 'lower'\) is invalid: .*param %w"):
        PassManager(["constfold", "dce"]).run(g)


def test_pass_returning_a_non_graph(temp_passes):
    name = temp_passes("test_returns_none", lambda g: None)
    with pytest.raises(TypeError, match=r"pass 'test_returns_none' returned NoneType, not a Graph"):
        PassManager([name]).run(graph())


def test_extra_instruments_see_every_stage():
    seen = []

    class Record(Instrument):
        def stage(self, index, name, graph):
            seen.append((index, name, len(graph.nodes)))

        def after_pass(self, name, graph, seconds):
            seen.append(("after", name))

    PassManager(["constfold", "dce"], instruments=[Record()]).run(graph())
    assert seen == [(0, "lower", 4), ("after", "constfold"), (1, "constfold", 4),
                    ("after", "dce"), (2, "dce", 3)]
