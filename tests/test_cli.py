"""The `kiln` command line: kiln dump on model files and .kir files."""
import re
import subprocess
import sys
import textwrap

import pytest

import kiln
from kiln import cli
from kiln.cli import main
from kiln.passes import pipeline

GRAPH_FILE = textwrap.dedent('''
    import numpy as np
    from kiln.ir import Graph, TensorType

    def build():
        g = Graph("tiny")
        x = g.add_input("x", TensorType(("N", 8)))
        w = g.add_param("w", np.ones((8, 4), np.float32))
        two = g.add_param("two", np.full((4,), 2.0, np.float32))
        scale = g.op("mul", two, two)          # folded at compile time
        g.set_outputs([g.op("relu", g.op("mul", g.op("matmul", x, w), scale))])
        return g

    graph = build()
    not_a_model = 42
''')


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "models.py"
    p.write_text(GRAPH_FILE)
    return str(p)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dump_prints_final_ir_that_parses_back(spec, capsys):
    code, out, _ = run(capsys, "dump", spec + ":build")
    assert code == 0
    assert out.startswith("graph @tiny(%x: f32[N,8]) -> f32[N,4] {")
    assert "= mul(%two, %two)" not in out          # constant-folded away
    assert str(kiln.ir.parse(out)) == out


def test_dump_after_all_shows_every_stage(spec, capsys):
    code, out, _ = run(capsys, "dump", spec + ":graph", "--after", "all")
    assert code == 0
    stages = [l for l in out.splitlines() if l.startswith("# after ")]
    assert stages == [f"# after {s}" for s, _ in cli._labelled([(n, None) for n in ["lower", *pipeline("inference")]])]
    assert pipeline("inference").count("constfold") == 2 and "# after constfold.2" in stages
    lowered = out.split("# after " + pipeline("inference")[0])[0].split("# after lower\n")[1]
    assert "%0: f32[4] = mul(%two, %two)" in lowered


def test_dump_after_one_pass_and_unknown_pass(spec, capsys):
    code, out, _ = run(capsys, "dump", spec + ":graph", "--after", "lower")
    assert code == 0 and "mul(%two, %two)" in out
    code, _, err = run(capsys, "dump", spec + ":graph", "--after", "vectorize")
    labels = [s for s, _ in cli._labelled([(n, None) for n in ["lower", *pipeline("inference")]])]
    assert code == 2 and f"no stage 'vectorize'; the stages are: {', '.join(labels)}, all" in err


def test_dump_after_a_pass_that_runs_twice_names_each_run(spec, capsys):
    """constfold runs before and after layout: ``constfold`` is the first run's IR,
    ``constfold.2`` the second's (the packed weights appear only in the second)."""
    _, first, _ = run(capsys, "dump", spec + ":graph", "--after", "constfold")
    _, second, _ = run(capsys, "dump", spec + ":graph", "--after", "constfold.2")
    _, layout, _ = run(capsys, "dump", spec + ":graph", "--after", "layout")
    assert first != second
    assert "matmul_packed" not in first and "matmul_packed" in layout and "matmul_packed" in second


def test_dump_llvm_and_asm(spec, capsys):
    code, out, _ = run(capsys, "dump", spec + ":graph", "--llvm", "--asm")
    assert code == 0
    assert 'define void @"kiln_main"' in out or "define void @kiln_main" in out
    assert "kiln_main:" in out  # the assembly label of the entry


def test_dump_kir_file_roundtrip(spec, tmp_path, capsys):
    _, out, _ = run(capsys, "dump", spec + ":graph", "--after", "lower")
    kir = tmp_path / "g.kir"
    kir.write_text(out)
    code, again, _ = run(capsys, "dump", str(kir), "--passes", "")
    assert code == 0 and again == out
    code, asm, _ = run(capsys, "dump", str(kir), "--asm")  # codegen needs no weight values
    assert code == 0 and "kiln_main" in asm


@pytest.mark.parametrize("arg,msg", [
    ("missing.py:m", "missing.py: no such file"),
    ("{spec}:nope", "defines no 'nope' (it defines: "),
    ("{spec}:not_a_model", "expected a kiln model or kiln.ir.Graph"),
    ("{spec}", "expected path/to/file.py:NAME or a .kir file"),
])
def test_dump_errors(spec, capsys, arg, msg):
    code, _, err = run(capsys, "dump", arg.format(spec=spec))
    assert code == 2 and msg in err


def test_bad_kir_file_reports_line_and_column(tmp_path, capsys):
    kir = tmp_path / "bad.kir"
    kir.write_text("graph @g(%x: f32[N,2]) -> f32[N,2] {\n  %0: f32[N,2] = frobnicate(%x)\n  return %0\n}\n")
    code, _, err = run(capsys, "dump", str(kir))
    assert code == 2 and "line 2, column 18: unknown op 'frobnicate'" in err


def test_console_script_entry_point(spec):
    r = subprocess.run([sys.executable, "-m", "kiln.cli", "dump", spec + ":graph"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("graph @tiny")


MODEL_FILE = textwrap.dedent('''
    import kiln

    model = kiln.Sequential([kiln.Input(shape=(784,)),
                             kiln.layers.Dense(512, activation="relu"),
                             kiln.layers.Dense(512, activation="relu"),
                             kiln.layers.Dense(10, activation="softmax")])
''')


def test_dump_keras_style_model_file(tmp_path, capsys):
    p = tmp_path / "mlp.py"
    p.write_text(MODEL_FILE)
    code, out, _ = run(capsys, "dump", f"{p}:model", "--after", "all", "--asm")
    assert code == 0
    assert re.search(r"# after lower\ngraph @sequential(_\d+)?\(%input_layer(_\d+)?: f32\[N,784\]\) "
                     r"-> f32\[N,10\] \{", out)
    assert re.search(r"matmul\(%input_layer(_\d+)?, %dense(_\d+)?.kernel\)", out)
    assert "softmax(" in out and "kiln_main:" in out


def test_print_after_all_and_time_passes(spec, capsys):
    code, out, err = run(capsys, "dump", spec + ":graph", "--print-after-all", "--time-passes")
    assert code == 0
    assert [l for l in out.splitlines() if l.startswith("# after ")] == \
        [f"# after {s}" for s, _ in cli._labelled([(n, None) for n in ["lower", *pipeline("inference")]])]
    for name in pipeline("inference"):
        assert name in err
    assert "ms" in err
