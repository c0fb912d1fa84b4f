"""The persistent ``scan`` kernel (kiln/codegen/cuda/kernels_scan.py) under the
simulator: recurrent layers (SimpleRNN, LSTM, GRU, Bidirectional; return_sequences,
go_backwards) against the CPU target and the interpreter, scan graphs exercising the
buffer cases (staged and contiguous steps, reverse, carries yielded as outputs or
passed through, body constants, zero steps, a symbolic length), a training step
(backprop through time: reversed scans with reductions and transposes in their
bodies), ``kiln dump --cuda``, and the error for a body the kernel cannot run."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln
from kiln import layers
from kiln.ir import Graph, TensorType, interpret
from kiln.ir.ops.control import build_scan
from kiln.runtime.cuda_executable import cuda_source

rng = np.random.default_rng(5)
TOL = dict(rtol=1e-5, atol=1e-5)


def T(*shape):
    return TensorType(shape)


def _tuple(r):
    return r if isinstance(r, tuple) else (r,)


def check_model(m, x):
    exe = kiln.compile(m, target="cuda")
    cpu = kiln.compile(m)
    got = exe(x)
    np.testing.assert_allclose(got, cpu(x), **TOL)
    np.testing.assert_allclose(got, kiln.interpret(exe.graph, x), **TOL)
    assert "scan" in [k.shape for k, _ in exe.program.steps]
    return exe


@pytest.mark.parametrize("seq", [True, False])
def test_simple_rnn(cuda, seq):
    m = kiln.Sequential([kiln.Input(shape=(3, 2)), layers.SimpleRNN(3, return_sequences=seq)])
    exe = check_model(m, rng.standard_normal((2, 3, 2)).astype(np.float32))
    # ONE launch for the whole recurrence; the body is row-independent, so each block
    # owns a range of batch rows (at most max_blocks=4 blocks under the simulator)
    (scan,) = [k for k, _ in exe.program.steps if k.shape == "scan"]
    for n, blocks in ((1, 1), (2, 2), (9, 4)):
        assert [d[0] for name, *d in exe.launches(n) if name == scan.name] == [(blocks,)]
    x = rng.standard_normal((5, 3, 2)).astype(np.float32)     # 5 rows over 4 blocks
    np.testing.assert_allclose(exe(x), kiln.compile(m)(x), **TOL)


@pytest.mark.parametrize("seq,back", [(True, False), (False, True), (True, True)])
def test_lstm(cuda, seq, back):
    m = kiln.Sequential([kiln.Input(shape=(3, 2)),
                         layers.LSTM(4, return_sequences=seq, go_backwards=back)])
    check_model(m, rng.standard_normal((2, 3, 2)).astype(np.float32))


@pytest.mark.parametrize("seq", [True, False])
def test_gru_reset_after(cuda, seq):
    m = kiln.Sequential([kiln.Input(shape=(3, 2)),
                         layers.GRU(3, reset_after=True, return_sequences=seq)])
    check_model(m, rng.standard_normal((2, 3, 2)).astype(np.float32))


def test_bidirectional_lstm_stack(cuda):
    m = kiln.Sequential([kiln.Input(shape=(3, 2)),
                         layers.Bidirectional(layers.LSTM(3, return_sequences=True)),
                         layers.GRU(3, go_backwards=True), layers.Dense(2)])
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    exe = check_model(m, x)
    np.testing.assert_allclose(exe(x[:1]), kiln.compile(m)(x[:1]), **TOL)   # batch 1 too


def check_graph(g, *inputs):
    exe = kiln.compile(g, target="cuda")
    cpu = kiln.compile(g)
    for got, c, want in zip(_tuple(exe(*inputs)), _tuple(cpu(*inputs)), _tuple(interpret(g, *inputs))):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, c, **TOL)
        np.testing.assert_allclose(got, want, **TOL)
    return exe


def test_time_major_reverse_with_passthrough_duplicates_and_reductions(cuda):
    """Steps along axis 0 (contiguous slices, no staging), reverse, a carry passed
    through, a body constant, a value yielded twice, a carry's old value and a
    reduction as per-step outputs."""
    g = Graph("tm")
    x = g.add_input("x", T(3, "N", 2))
    h0 = g.add_input("h0", T("N", 3))
    k0 = g.add_input("k0", T("N", 3))
    w = g.add_param("w", rng.standard_normal((2, 3)).astype(np.float32))
    u = g.add_param("u", (rng.standard_normal((3, 3)) * 0.5).astype(np.float32))

    def body(b, cs, xs, ws):
        c = b.constant(np.array([1.0, -2.0, 0.5], np.float32))
        h = b.op("tanh", b.op("add", b.op("matmul", xs[0], ws[0]),
                              b.op("mul", b.op("matmul", cs[0], ws[1]), c)))
        r = b.op("reduce_sum", h, axes=[1], keepdims=False)
        return [h, cs[1]], [h, h, cs[0], r]

    (h, k), ys = build_scan(g, [h0, k0], [x], [w, u], body, axis=0, reverse=True)
    g.set_outputs([h, k, *ys])
    check_graph(g, rng.standard_normal((3, 2, 2)).astype(np.float32),
                *rng.standard_normal((2, 2, 3)).astype(np.float32))


def test_zero_steps_and_symbolic_length(cuda):
    g = Graph("sym")
    x = g.add_input("x", T("N", "L", 3))
    h0 = g.add_input("h0", T("N", 3))
    (h,), (ys,) = build_scan(g, [h0], [x], [], lambda b, cs, xs, ws: (
        [b.op("maximum", cs[0], xs[0])], [b.op("neg", cs[0])]), axis=1)
    g.set_outputs([h, ys])
    exe = kiln.compile(g, target="cuda")
    for n, length in ((2, 3), (1, 0)):
        xv = rng.standard_normal((n, length, 3)).astype(np.float32)
        hv = rng.standard_normal((n, 3)).astype(np.float32)
        for a, b in zip(exe(xv, hv), interpret(g, xv, hv)):
            np.testing.assert_array_equal(a, b)


def test_lstm_training_step_backprop_through_time(cuda):
    """The gradient of an LSTM model: the training graph's forward scan and its
    reversed backward scan (transposes, pads, reductions, matmuls in the body) run
    on the device and match the CPU target step by step."""
    m = kiln.Sequential([kiln.Input(shape=(3, 2)), layers.LSTM(3), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    y = rng.standard_normal((2, 1)).astype(np.float32)
    m.train_on_batch(x, y)
    g = m._train_step.train_graph
    gpu = kiln.compile(g, target="cuda", passes="training")
    cpu = kiln.compile(g, passes="training")
    scans = [k.name for k, _ in gpu.program.steps if k.shape == "scan"]
    # forward: row-independent, a block per row; backward: the weight gradients sum
    # over the batch rows, so one block runs it
    assert [d[0] for name, *d in gpu.launches(2) if name in scans] == [(2,), (1,)]
    (rk,) = [p for p in g.params if p.endswith("recurrent_kernel")]
    before = gpu.get_param(rk)
    sw, lr = np.ones(2, np.float32), np.float32(0.1)
    for _ in range(2):
        np.testing.assert_allclose(gpu(x, y, sw, lr), cpu(x, y, sw, lr), **TOL)
    for name in g.params:
        np.testing.assert_allclose(gpu.get_param(name), cpu.params[name], **TOL, err_msg=name)
    assert not np.allclose(gpu.get_param(rk), before)


def test_dump_cuda_shows_the_scan_kernel():
    m = kiln.Sequential([kiln.Input(shape=(3, 2)), layers.LSTM(4)])
    text = cuda_source(m)
    assert "scan kernel for" in text and "= scan(" in text
    assert "grid=(max(1, min(d_N, 4096))) block=(256,)" in text   # one launch, blocks own rows
    assert "for s__ in range(T__):" in text and "cuda.syncthreads()" in text


def test_a_body_the_kernel_cannot_run_is_named(cuda):
    g = Graph("nested")
    x = g.add_input("x", T("N", 4, 3))
    s0 = g.add_input("s0", T("N",))

    def inner(bg, cs, xs, ws):
        s = bg.op("add", cs[0], xs[0])
        return [s], [s]

    def outer(bg, cs, xs, ws):
        (s,), (ys,) = build_scan(bg, [cs[0]], [xs[0]], [], inner, axis=1)
        return [s], [ys]

    (s,), (ys,) = build_scan(g, [s0], [x], [], outer, axis=1)
    g.set_outputs([s, ys])
    with pytest.raises(NotImplementedError, match=r"scan \(inside a scan's body\)"):
        kiln.compile(g, target="cuda")


_PTX = r'''
import math
import numpy as np
from numba import cuda, types
import kiln
from kiln import layers
from kiln.codegen.cuda import LaunchConfig, lower_graph
from kiln.runtime.cuda_executable import CUDA_PIPELINES
from kiln.runtime.executable import optimize_graph

def arr(dt):
    return types.Array(types.boolean if dt == np.bool_ else getattr(types, np.dtype(dt).name), 1, "C")

def scans(model_or_graph, passes):
    _, g = optimize_graph(model_or_graph, CUDA_PIPELINES[passes], True, None, "ptx")
    prog = lower_graph(g, LaunchConfig())
    for k, node in prog.steps:
        if k.shape != "scan":
            continue
        ns = {"cuda": cuda, "math": math, **{t: getattr(types, t) for t in (
            "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint64")}}
        exec(compile(k.source, k.name, "exec"), ns)
        sig = [arr(v.type.dtype.np) for v in (*node.outputs, *node.inputs)]
        sig += [arr(np.dtype(dt)) for _, _, dt in k.scratch] + [types.int64] * len(prog.symbols)
        cuda.compile_ptx(ns[k.name].py_func, tuple(sig), cc=(8, 0))
        print("ok", k.name)

m = kiln.Sequential([kiln.Input(shape=(3, 2)), layers.LSTM(3, return_sequences=True),
                     layers.GRU(3, go_backwards=True), layers.Dense(2)])
m.compile(optimizer="sgd", loss="mse")
m.train_on_batch(np.zeros((2, 3, 2), np.float32), np.zeros((2, 2), np.float32))
scans(m._train_step.train_graph, "training")
'''


def _cuda_home():
    import glob
    for d in [os.environ.get("CUDA_HOME", ""), *sorted(glob.glob("/usr/local/cuda*"))]:
        if d and glob.glob(os.path.join(d, "**", "libnvvm.so*"), recursive=True):
            return d
    return None


def test_scan_kernels_compile_for_a_real_gpu():
    """The simulator runs kernels as Python; numba's CUDA compiler types them. Every
    scan kernel of the training step of an LSTM/GRU model (forward and
    backward) compiles to PTX (numba + libnvvm, no GPU needed; skipped without a
    CUDA toolkit)."""
    home = _cuda_home()
    if home is None:
        pytest.skip("no CUDA toolkit (libnvvm) to compile PTX with")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_HOME"] = home
    r = subprocess.run([sys.executable, "-c", _PTX], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.count("ok k") == 4, r.stdout      # 2 forward scans, 2 backward
