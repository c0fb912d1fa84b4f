"""State updates (``param <- value``): text form, verifier, interpreter, passes, codegen."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, ParseError, TensorType, VerifyError, parse, verify
from kiln.passes import PassManager


def sgd_graph():
    g = Graph("sgd")
    x = g.add_input("x", TensorType(("N", 3)))
    w = g.add_param("w", np.array([1.0, 2.0, 3.0], np.float32))
    grad = g.op("reduce_sum", x, axes=[0])
    g.add_update(w, g.op("sub", w, g.op("mul", grad, g.constant(0.5))))
    g.set_outputs([g.op("reduce_sum", g.op("mul", x, w), axes=[1])])
    return g


def test_text_roundtrip_and_verify():
    g = sgd_graph()
    text = str(verify(g))
    assert "  %w <- %3\n  return %5\n" in text
    assert str(parse(text)) == text


def test_parse_errors_for_updates():
    bad = str(sgd_graph()).replace("%w <- %3", "%x <- %3")
    with pytest.raises(ParseError, match=r"%x is not a param of this graph"):
        parse(bad)
    bad = str(sgd_graph()).replace("%w <- %3", "%w <- %5")
    with pytest.raises(ParseError, match=r"update of %w: value has type f32\[N\], the param is f32\[3\]"):
        parse(bad)
    bad = str(sgd_graph()).replace("%w <- %3", "%w <- %3\n  %w <- %2")
    with pytest.raises(ParseError, match="updated twice"):
        parse(bad)


def test_verifier_rejects_foreign_update_value():
    g = sgd_graph()
    other = sgd_graph()
    g.updates = [(g.params["w"], other.nodes[-1].outputs[0])]
    with pytest.raises(VerifyError, match="not defined in this graph"):
        verify(g)


def test_interpreter_returns_updates_and_leaves_values_alone():
    g = sgd_graph()
    out, upd = kiln.interpret(g, np.ones((2, 3)), return_updates=True)
    np.testing.assert_allclose(out, [6.0, 6.0])
    np.testing.assert_allclose(upd["w"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(g.param_values["w"], [1.0, 2.0, 3.0])


def test_passes_treat_updated_params_as_variables():
    g = sgd_graph()
    out = PassManager(["simplify", "constfold", "dce"]).run(g)
    assert "w" in out.params and out.updates and out.updates[0][0] is out.params["w"]
    # nothing reading %w was folded: the product with x still reads the param
    assert "mul(%x, %w)" in str(out)


def test_compiled_updates_happen_in_place_after_outputs():
    exe = kiln.compile(sgd_graph())
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(exe(x), [6.0, 6.0])          # read with the old w
    np.testing.assert_allclose(exe.params["w"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(exe(x), [3.0, 3.0])
    np.testing.assert_allclose(exe.params["w"], [-1.0, 0.0, 1.0])
