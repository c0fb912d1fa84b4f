"""The IR text form: print/parse round trips, and parse errors with their positions."""
import textwrap

import numpy as np
import pytest

import kiln
from kiln.ir import OPS, Attr, AttrKind, DType, Graph, OpDef, ParseError, TensorType, parse, verify


def roundtrip(g: Graph) -> Graph:
    text = str(g)
    g2 = parse(text)
    assert str(g2) == text
    verify(g2)
    return g2


def T(*shape, dtype=DType.f32):
    return TensorType(shape, dtype)


# -- graphs to round-trip -------------------------------------------------------------------------
def mlp():
    g = Graph("mlp")
    x = g.add_input("x", T("N", 784))
    k1 = g.add_param("dense.kernel", type=T(784, 32))
    b1 = g.add_param("dense.bias", type=T(32))
    k2 = g.add_param("dense_1.kernel", type=T(32, 10))
    h = g.op("relu", g.op("add", g.op("matmul", x, k1), b1))
    g.set_outputs([g.op("softmax", g.op("matmul", h, k2), axis=-1)])
    return g


def multi_output():
    g = Graph("multi")
    x = g.add_input("x", T("N", 7))
    y = g.add_input("y", T("N", 7))
    s = g.op("add", x, y)
    m = g.op("reduce_max", s, axes=[1], keepdims=True)
    g.set_outputs([s, m, x, g.op("exp", m)])
    return g


def constants():
    g = Graph("consts")
    vals = [np.array([-1.5, np.inf, -np.inf, np.nan, -0.0, 0.0], np.float32),
            np.array(0.1, np.float32),
            np.array([1e20, 1e-20, 1.401298464324817e-45, 3.4028234663852886e38], np.float32),
            np.array([[0.1, -2.0 / 3.0], [np.pi, -1e300]], np.float64),
            np.array([-7, 0, 2 ** 31 - 1, -(2 ** 31)], np.int32),
            np.array([2 ** 62, -(2 ** 62), 5], np.int64),
            np.array([[True, False], [False, True]]),
            np.array(False),
            np.array(-3, np.int32),
            np.zeros((2, 0), np.float32),
            np.zeros((0,), np.int64)]
    outs = [g.op("constant", value=v) for v in vals]
    g.set_outputs(outs)
    return g, vals


def all_attr_kinds():
    g = Graph("attrs")
    x = g.add_input("x", T("N", 7, 33))
    r = g.op("reshape", x, shape=["N", -1])                   # shape, with a symbol and -1
    t = g.op("transpose", x, perm=[2, 0, 1])                   # ints
    s = g.op("reduce_sum", t, axes=[0, -1], keepdims=True)     # ints + bool
    s2 = g.op("reduce_mean", t, axes=[1])                      # default keepdims printed
    c = g.op("cast", r, dtype="i64")                           # dtype
    sm = g.op("softmax", x, axis=0)                            # int
    k = g.op("constant", value=np.float64(2.5))                # tensor
    g.set_outputs([c, s, s2, sm, k])
    return g


def symbolic():
    g = Graph("seq.model")
    x = g.add_input("x", T("N", "T", 16))
    y = g.add_input("y", T(1, "T", 16))
    z = g.op("mul", x, y)
    w = g.op("reshape", z, shape=["N", "T", 4, 4])
    g.set_outputs([g.op("transpose", w, perm=[1, 0, 3, 2])])
    return g


def dtypes():
    g = Graph("dt")
    a = g.add_input("a", T(3, dtype=DType.f64))
    b = g.add_input("b", T(3, dtype=DType.i32))
    c = g.add_input("c", T(3, dtype=DType.i64))
    d = g.add_input("d", T(3, dtype=DType.bool))
    e = g.add_param("e", type=T(dtype=DType.f64))
    g.set_outputs([g.op("add", a, e), g.op("neg", b), g.op("relu", c), g.op("cast", d, dtype="f32"),
                   g.op("cast", b, dtype="bool")])
    return g


def no_inputs():
    g = Graph("k")
    g.set_outputs([g.op("exp", g.constant([1.0, 2.0]))])
    return g


@pytest.mark.parametrize("make", [mlp, multi_output, all_attr_kinds, symbolic, dtypes, no_inputs])
def test_roundtrip(make):
    roundtrip(make())


def test_roundtrip_same_semantics():
    g = mlp()
    g2 = roundtrip(g)
    rng = np.random.default_rng(1)
    params = {n: rng.standard_normal(v.type.shape).astype(np.float32) for n, v in g.params.items()}
    x = rng.standard_normal((3, 784)).astype(np.float32)
    np.testing.assert_array_equal(kiln.interpret(g, x, params=params), kiln.interpret(g2, x, params=params))


def test_constants_roundtrip_bit_exact():
    g, vals = constants()
    g2 = roundtrip(g)
    got = kiln.interpret(g2)
    assert len(got) == len(vals)
    for a, b in zip(got, vals):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), (a, b)   # -0.0, nan, denormals, extremes exact


def test_printed_forms():
    text = str(all_attr_kinds())
    assert "reshape(%x) {shape=[N, -1]}" in text
    assert "transpose(%x) {perm=[2, 0, 1]}" in text
    assert "{axes=[0, -1], keepdims=true}" in text
    assert "reduce_mean(%1) {axes=[1], keepdims=false}" in text
    assert "cast(%0) {dtype=i64}" in text
    assert "softmax(%x) {axis=0}" in text
    assert "%6: f64[] = constant() {value=2.5}" in text
    assert text.startswith("graph @attrs(%x: f32[N,7,33]) -> (i64[N,231], f32[1,N,1], f32[33,7], "
                           "f32[N,7,33], f64[]) {\n")
    assert text.endswith("  return %4, %2, %3, %5, %6\n}\n")
    consts = str(constants()[0])
    assert "value=[-1.5, inf, -inf, nan, -0.0, 0.0]" in consts
    assert "value=[[true, false], [false, true]]" in consts
    assert "%9: f32[2,0] = constant() {value=[[], []]}" in consts


@pytest.fixture
def float_str_op():
    """A throwaway op with float and str attributes (no real op has them yet)."""
    class Scale(OpDef):
        name = "test_scale"
        num_inputs = 1
        attrs = (Attr("factor", AttrKind.FLOAT), Attr("mode", AttrKind.STR, "fast"))

        def infer(self, x, *, factor, mode):
            return x

        def reference(self, x, *, factor, mode):
            return (x * factor).astype(x.dtype)

    assert "test_scale" not in OPS
    OPS["test_scale"] = Scale()
    yield
    del OPS["test_scale"]


@pytest.mark.parametrize("factor", [0.5, -2.0, 1e-05, 1e300, float("inf"), float("-inf"), 3])
@pytest.mark.parametrize("mode", ["fast", 'a "quoted" \\ back\\slash', "", "true", "two\nlines",
                                  "not a newline: \\n", "tab\there"])
def test_float_and_str_attrs_roundtrip(float_str_op, factor, mode):
    g = Graph()
    x = g.add_input("x", T(3))
    y = g.op("test_scale", x, factor=factor, mode=mode)
    g.set_outputs([y])
    g2 = roundtrip(g)
    n = g2.nodes[0]
    assert n.attrs["factor"] == float(factor) and isinstance(n.attrs["factor"], float)
    assert n.attrs["mode"] == mode


def test_nan_float_attr_roundtrip(float_str_op):
    g = Graph()
    x = g.add_input("x", T(3))
    g.set_outputs([g.op("test_scale", x, factor=float("nan"))])
    g2 = roundtrip(g)
    assert np.isnan(g2.nodes[0].attrs["factor"])


def test_handwritten_text_is_canonicalized():
    src = """
    # a comment
    graph @h(%inp: f32[N, 3],%w:f32[3,3]) -> (f32[N,3], f32[]) {
      param %b : f32[3]   # bias
      %mm : f32[N,3] = matmul(%inp, %w)
      %out: f32[N,3] = add(%mm, %b)
      %c: f32[] = constant() {value=1}
      return %out, %c
    }
    """
    g = parse(src)
    want = textwrap.dedent("""\
        graph @h(%inp: f32[N,3], %w: f32[3,3]) -> (f32[N,3], f32[]) {
          param %b: f32[3]
          %0: f32[N,3] = matmul(%inp, %w)
          %1: f32[N,3] = add(%0, %b)
          %2: f32[] = constant() {value=1.0}
          return %1, %2
        }
        """)
    assert str(g) == want
    assert str(parse(want)) == want
    assert g.param_values == {}   # values are not part of the text


def test_attribute_order_is_the_ops_not_the_texts():
    g = parse("graph @g(%x: f32[2,3]) -> f32[2,1] {\n"
              "  %0: f32[2,1] = reduce_sum(%x) {keepdims=true, axes=[1]}\n"
              "  return %0\n}\n")
    assert "{axes=[1], keepdims=true}" in str(g)


# -- parse errors -----------------------------------------------------------------------------
HEAD = "graph @g(%x: f32[N,3]) -> f32[N,3] {\n"

PARSE_ERRORS = [
    # (text, line, column, message pattern)
    (HEAD + "  %0: f32[N,3] = frobnicate(%x)\n  return %0\n}\n", 2, 18, r"unknown op 'frobnicate'"),
    (HEAD + "  %0: f32[N,3] = add(%x, %y)\n  return %0\n}\n", 2, 26, r"use of undefined value %y"),
    (HEAD + "  %0: f32[N,3] = relu(%x)\n  %0: f32[N,3] = exp(%x)\n  return %0\n}\n", 3, 3,
     r"value %0 is defined twice"),
    (HEAD + "  %x: f32[N,3] = relu(%x)\n  return %x\n}\n", 2, 3, r"value %x is defined twice"),
    (HEAD + "  %0: f32[N,3], %0: f32[N,3] = relu(%x)\n  return %0\n}\n", 2, 17, r"value %0 is defined twice"),
    (HEAD + "  %0: f32[N,4] = relu(%x)\n  return %0\n}\n", 2, 3,
     r"type of %0 is written f32\[N,4\], but relu gives f32\[N,3\]"),
    (HEAD + "  %0: f64[N,3] = relu(%x)\n  return %0\n}\n", 2, 3,
     r"type of %0 is written f64\[N,3\], but relu gives f32\[N,3\]"),
    ("graph @g(%x: f16[N,3]) -> f32[N,3] {\n  return %x\n}\n", 1, 14,
     r"unknown dtype 'f16' \(expected one of f32, f64, i32, i64, bool\)"),
    (HEAD + "  %0: f32[N,3] = relu(%x)\n}\n", 3, 1, r"expected 'param', a node or 'return', got '}'"),
    (HEAD + "  %0: f32[N,3] = relu(%x)\n", 3, 1, r"expected 'param', a node or 'return', got end of input"),
    (HEAD + "  %0: f32[N,3] = relu(%x) $\n  return %0\n}\n", 2, 27, r"unexpected character '\$'"),
    (HEAD + "  %0: f32[N,1] = reduce_sum(%x) {axes=[1], keepdims=true}\n  return %0\n}\n", 3, 10,
     r"return types f32\[N,1\] do not match the signature's f32\[N,3\]"),
    ("graph @g(%x: f32[3]) -> (f32[3], f32[3]) {\n  return %x\n}\n", 2, 10,
     r"return types f32\[3\] do not match the signature's f32\[3\], f32\[3\]"),
    (HEAD + "  %0: f32[N,3] = add(%x)\n  return %0\n}\n", 2, 18, r"add: expects 2 operand\(s\), got 1"),
    (HEAD + "  param %w: f32[4]\n  %0: f32[N,3] = add(%x, %w)\n  return %0\n}\n", 3, 18,
     r"add: cannot broadcast f32\[N,3\], f32\[4\]"),
    (HEAD + "  %0: f32[N,3] = softmax(%x) {axis=1, axis=0}\n  return %0\n}\n", 2, 39,
     r"attribute axis given twice"),
    (HEAD + "  %0: f32[N,3] = softmax(%x) {dim=1}\n  return %0\n}\n", 2, 18, r"softmax: unknown attribute\(s\) dim"),
    (HEAD + "  %0: f32[N,3], %1: f32[N,3] = relu(%x)\n  return %0\n}\n", 2, 32, r"relu has 1 output\(s\), 2 written"),
    (HEAD + "  %0: f32[3] = constant() {value=[1.0, 2.0]}\n  return %x\n}\n", 2, 28,
     r"constant value does not fit f32\[3\]"),
    ("graph @g(%x: f32[N,-1]) -> f32[N,3] {\n  return %x\n}\n", 1, 20,
     r"expected a dimension \(int or symbol\), got '-1'"),
    ("graph @g(%x: f32[N,3]) f32[N,3] {\n  return %x\n}\n", 1, 24, r"expected arrow, got 'f32'"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  return %x\n}\n", 1, 7, r"expected global, got 'g'"),
    (HEAD + "  param %x: f32[3]\n  return %x\n}\n", 2, 9, r"value %x is defined twice"),
    (HEAD + "  return %x\n}\ngraph\n", 4, 1, r"expected eof, got 'graph'"),
    (HEAD + "  %0: f32[N,3] = softmax(%x) {axis=}\n  return %0\n}\n", 2, 36, r"expected an attribute value, got '}'"),
]


@pytest.mark.parametrize("text,line,col,msg", PARSE_ERRORS, ids=[f"e{i}" for i in range(len(PARSE_ERRORS))])
def test_parse_errors(text, line, col, msg):
    with pytest.raises(ParseError, match=msg) as ei:
        parse(text)
    e = ei.value
    assert (e.line, e.col) == (line, col), str(e)
    # the message shows the line and a caret under the column
    s = str(e)
    assert s.startswith(f"line {line}, column {col}: ")
    src_line = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
    if src_line:
        shown, caret = s.splitlines()[1:3]
        assert shown == "  " + src_line
        assert caret == "  " + " " * (col - 1) + "^"


def test_parse_requires_str():
    with pytest.raises(TypeError, match="parse expects the IR text as str, got bytes"):
        parse(b"graph @g() -> f32[] {}")
