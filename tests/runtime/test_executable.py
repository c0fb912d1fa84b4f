"""kiln.compile / Executable: input checking, batch sizes, dumps, generated code."""
import re

import numpy as np
import pytest

import kiln
from kiln.passes import pipeline
from kiln.ir import Graph, TensorType


def mlp_graph(seed=0):
    rng = np.random.default_rng(seed)
    g = Graph("mlp")
    h = g.add_input("x", TensorType(("N", 20)))
    for i, (a, b) in enumerate([(20, 16), (16, 4)]):
        w = g.add_param(f"d{i}.kernel", rng.standard_normal((a, b)).astype(np.float32) * 0.3)
        bias = g.add_param(f"d{i}.bias", rng.standard_normal(b).astype(np.float32) * 0.1)
        h = g.op("add", g.op("matmul", h, w), bias)
        h = g.op("relu", h) if i == 0 else g.op("softmax", h, axis=-1)
    g.set_outputs([h])
    return g


def numpy_mlp(g, x):
    w = g.param_values
    h = np.maximum(x @ w["d0.kernel"] + w["d0.bias"], 0)
    z = h @ w["d1.kernel"] + w["d1.bias"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def exe_and_graph():
    g = mlp_graph()
    return kiln.compile(g), g


def test_one_executable_serves_every_batch_size(exe_and_graph):
    exe, g = exe_and_graph
    rng = np.random.default_rng(1)
    for n in (37, 1, 5, 64, 2, 0):
        x = rng.random((n, 20)).astype(np.float32)
        out = exe(x)
        assert out.shape == (n, 4) and out.dtype == np.float32
        np.testing.assert_allclose(out, numpy_mlp(g, x), rtol=1e-5, atol=1e-6)


def test_float64_and_noncontiguous_inputs_are_converted(exe_and_graph):
    exe, g = exe_and_graph
    x64 = np.random.default_rng(2).random((9, 40))
    view = x64[:, ::2]                      # float64, non-contiguous
    np.testing.assert_allclose(exe(view), numpy_mlp(g, view.astype(np.float32)), rtol=1e-5, atol=1e-6)
    ints = np.arange(40).reshape(2, 20)
    np.testing.assert_allclose(exe(ints), numpy_mlp(g, ints.astype(np.float32)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exe(x64[:3, :20].tolist()), numpy_mlp(g, x64[:3, :20].astype(np.float32)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x,match", [
    (np.zeros((4, 21), np.float32), r"expected shape \(None, 20\), got shape \(4, 21\)"),
    (np.zeros((4,), np.float32), r"expected shape \(None, 20\) \(rank 2\), got shape \(4,\) \(rank 1\)"),
    (np.zeros((2, 4, 20), np.float32), r"rank 2.*got shape \(2, 4, 20\) \(rank 3\)"),
    (np.array([["a"] * 20]), r"expected numeric data .* got dtype <U1 with shape \(1, 20\)"),
    (np.zeros((1, 20), complex), r"expected numeric data"),
])
def test_bad_inputs_are_rejected_with_expected_and_given(exe_and_graph, x, match):
    exe, _ = exe_and_graph
    with pytest.raises(ValueError, match=match):
        exe(x)


def test_wrong_number_of_inputs(exe_and_graph):
    exe, _ = exe_and_graph
    with pytest.raises(ValueError, match=r"expected 1 input\(s\) \(x\), got 2"):
        exe(np.zeros((1, 20)), np.zeros((1, 20)))


def test_inconsistent_batch_across_inputs():
    g = Graph("two")
    a = g.add_input("a", TensorType(("N", 3)))
    b = g.add_input("b", TensorType(("N", 3)))
    g.set_outputs([g.op("add", a, b)])
    exe = kiln.compile(g)
    np.testing.assert_array_equal(exe(np.ones((2, 3)), np.ones((2, 3))), 2 * np.ones((2, 3)))
    with pytest.raises(ValueError, match="symbol N is 2 elsewhere, got 5"):
        exe(np.ones((2, 3)), np.ones((5, 3)))


def test_unknown_target_and_bad_model():
    with pytest.raises(ValueError, match="unknown target 'tpu'"):
        kiln.compile(mlp_graph(), target="tpu")
    with pytest.raises(TypeError, match="expects a kiln model or a kiln.ir.Graph, got int"):
        kiln.compile(3)


def test_missing_param_value_is_reported():
    g = kiln.ir.parse(str(mlp_graph()))  # the text form carries no parameter values
    with pytest.raises(ValueError, match=r"param %d\d\.\w+ has no value"):
        kiln.compile(g, passes=[])


def test_dump_dir_has_ir_after_every_pass_and_generated_code(tmp_path):
    exe = kiln.compile(mlp_graph(), dump_dir=tmp_path)
    stages = ["lower", *pipeline("inference")]
    k = len(stages)
    want = [f"{i:02d}-{s}.kir" for i, s in enumerate(stages)] + [
        f"{k:02d}-llvm.ll", f"{k + 1:02d}-llvm-opt.ll", f"{k + 2:02d}-asm.s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == want
    for f in want[:k]:
        text = (tmp_path / f).read_text()
        assert str(kiln.ir.parse(text)) == text
    assert (tmp_path / want[k - 1]).read_text() == exe.ir
    assert re.search(r'define void @"?kiln_main"?\(', (tmp_path / want[k]).read_text())
    assert "kiln_main" in (tmp_path / want[k + 2]).read_text()


def test_env_var_dump_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DUMP_DIR", str(tmp_path / "d"))
    kiln.compile(mlp_graph())
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert names[0] == "00-lower.kir" and names[-1].endswith("-asm.s")


def test_loops_are_vectorized():
    g = Graph("v")
    a = g.add_input("a", TensorType(("N", 512)))
    b = g.add_input("b", TensorType(("N", 512)))
    g.set_outputs([g.op("add", a, b)])
    asm = kiln.compile(g).asm
    # packed-single adds: SSE addps on xmm, or AVX vaddps on ymm/zmm
    assert re.search(r"\bv?addps\b", asm), "the elementwise loop was not vectorized"
    mm = kiln.compile(mlp_graph()).asm
    assert re.search(r"\bv?(fmadd\d+ps|mulps)\b", mm), "the matmul inner loop was not vectorized"


def test_batch_size_is_a_runtime_argument_not_a_constant(exe_and_graph):
    exe, _ = exe_and_graph
    ll = exe.llvm_ir
    assert re.search(r'define void @"?kiln_main"?\(.*(i64\*|ptr) %"?dims"?\)', ll)
    assert exe.symbols == ("N",)
