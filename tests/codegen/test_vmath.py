"""The vectorizable exp/tanh/erf (kiln/codegen/llvm/vmath.py) against numpy in float64,
measured in units in the last place, plus special values."""
import math

import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType


@pytest.fixture(scope="module")
def exe():
    g = Graph("v")
    x = g.add_input("x", TensorType(("N",)))
    g.set_outputs([g.op("exp", x), g.op("tanh", x), g.op("sigmoid", x), g.op("erf", x)])
    return kiln.compile(g)


def ulps(got, ref):
    ref32 = ref.astype(np.float32)
    ok = np.isfinite(ref32) & (np.abs(ref32) > np.finfo(np.float32).tiny)
    spacing = np.spacing(np.abs(ref32[ok])).astype(np.float64)
    return np.max(np.abs(got[ok].astype(np.float64) - ref[ok]) / spacing)


def test_accuracy_in_ulps(exe):
    x = np.concatenate([np.linspace(-110, 90, 200001), np.linspace(-1, 1, 20001),
                        np.geomspace(1e-30, 1, 1000), -np.geomspace(1e-30, 1, 1000)]).astype(np.float32)
    e, t, s, r = exe(x)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        assert ulps(e, np.exp(x64)) <= 1.5
        assert ulps(t, np.tanh(x64)) <= 2
        assert ulps(s, 1 / (1 + np.exp(-x64))) <= 3
    erf64 = np.array([math.erf(v) for v in x64])
    assert ulps(r, erf64) <= 8


def test_special_values(exe):
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 89.0, -104.0, -90.0], np.float32)
    e, t, s, r = exe(x)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(e, np.exp(x))          # inf, 0, nan, subnormals exact
    np.testing.assert_array_equal(t[[0, 1, 3]], [-1.0, 1.0, 0.0])
    assert np.isnan(t[2]) and np.isnan(s[2])
    np.testing.assert_array_equal(s[[0, 1, 3]], [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(r[[0, 1, 3, 4, 5, 6, 7]], [-1.0, 1.0, 0.0, -0.0, 1.0, -1.0, -1.0])
    assert np.isnan(r[2]) and np.signbit(r[4])


def test_the_loops_vectorize(exe):
    # no scalar libm calls left in the loops: exp/tanh are inlined polynomial code
    assert "expf" not in exe.asm and "tanhf" not in exe.asm and "erff" not in exe.asm
    assert "vfmadd" in exe.asm or "vmulps" in exe.asm or "mulps" in exe.asm


def test_exp_nonpositive_accuracy_and_edges():
    """The softmax's exp (arguments x - max <= 0): within 1.5 ulp of exp over the normal
    range, 0 well below it and for -inf, NaN kept -- through a softmax over one row."""
    g = Graph("sm")
    x = g.add_input("x", TensorType(("N", 4099)))
    g.set_outputs([g.op("softmax", x)])
    exe = kiln.compile(g)
    row = np.concatenate([[0.0], -np.linspace(0, 87, 4096), [-100.0, -np.inf]]).astype(np.float32)
    got = exe(row[None])[0]
    want = np.exp(row.astype(np.float64)) / np.exp(row.astype(np.float64)).sum()
    normal = row > -87
    assert ulps(got[normal], want[normal]) <= 3          # exp's error plus the division's
    assert (got[row < -88] == 0).all()                    # -100 and -inf
    nan_row = row.copy()
    nan_row[5] = np.nan
    assert np.isnan(exe(nan_row[None])).all()


def test_splat_and_undef_constants_parse_as_the_spelled_out_ones():
    """emit.splat / emit.undef print one short form (``splat (float 1.5)``, ``undef``)
    where llvmlite spells every lane; LLVM reads both as the same constants, so the
    optimized module is the same text."""
    import llvmlite.binding as llvm
    import llvmlite.ir as ll
    from kiln.codegen.llvm.emit import splat, undef

    def module(short: bool) -> str:
        m = ll.Module()
        vt, it = ll.VectorType(ll.FloatType(), 16), ll.VectorType(ll.IntType(32), 16)
        f = ll.Function(m, ll.FunctionType(vt, [ll.FloatType(), vt]), "f")
        b = ll.IRBuilder(f.append_basic_block())
        c = (lambda t, v: splat(t, v)) if short else (lambda t, v: ll.Constant(t, [v] * t.count))
        u = undef(vt) if short else ll.Constant(vt, ll.Undefined)
        s = b.shuffle_vector(b.insert_element(u, f.args[0], ll.IntType(32)(0)), u, c(it, 0))
        y = b.fadd(b.fmul(s, f.args[1]), c(vt, 1.5))
        b.ret(b.select(b.fcmp_unordered(">", y, c(vt, 0.0)), y, c(vt, float("-inf"))))
        return str(m)

    short, long = module(True), module(False)
    assert "splat (float" in short and "splat (i32 0)" in short and "<16 x float> undef" in short
    assert len(short) < len(long) / 2
    parsed = [str(llvm.parse_assembly(text)) for text in (short, long)]
    assert parsed[0] == parsed[1]
