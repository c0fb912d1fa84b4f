"""kiln's CUDA target on a REAL GPU: correctness of every kernel family against the CPU
target on realistic shapes, fused-elementwise bandwidth against the device's copy
bandwidth, and inference / training timings for the MLP, a CNN and a small ResNet,
with the same models in PyTorch on the same GPU for a ratio when torch (a CUDA build)
is importable. Never part of the test run (the tests use numba's CUDA simulator).

    python bench/gpu_check.py [--rounds 20] [--batch 256] [--skip-models] [--json out.json]
                              [--tiles '64,64,16,4,4;128,128,8,8,8']   # GEMM tile sweep
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu_check.py --smoke   # tiny shapes: checks the script
    CUDA_HOME=/usr/local/cuda python bench/gpu_check.py --ptx [--tiles ...]   # no GPU: PTX + ptxas -v

Needs an NVIDIA GPU, its driver, and numba's CUDA target (``pip install kiln[cuda]``).
Do NOT set NUMBA_ENABLE_CUDASIM. Exit status 1 if a kernel family disagrees with the
CPU by more than 1e-4 relative (to the result's largest magnitude).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kiln                                      # noqa: E402
from kiln import layers                          # noqa: E402
from kiln.ir import DType, Graph, TensorType     # noqa: E402

RTOL = 1e-4
rng = np.random.default_rng(0)
SMOKE = False      # --smoke: tiny shapes, simulator allowed -- checks this script, not the GPU


def sz(big, small):
    return small if SMOKE else big


# -- kernel families ------------------------------------------------------------------------

def _graph(build, operands, dtype="float32"):
    g = Graph("check")
    vals = []
    for i, shape in enumerate(operands):
        t = TensorType(shape, DType.from_numpy(np.dtype(dtype)))
        if "N" in shape:
            vals.append(g.add_input(f"x{i}", t))
        else:
            vals.append(g.add_param(f"p{i}", (rng.standard_normal(shape) * 0.5).astype(dtype)))
    out = build(g, *vals)
    g.set_outputs(list(out) if isinstance(out, (list, tuple)) else [out])
    return g


def _gather_graph():
    g = Graph("gather")
    x = g.add_input("x", TensorType(("N", sz(64, 3))))
    table = g.add_param("table", rng.standard_normal((sz(10000, 7), sz(128, 4))).astype(np.float32))
    ids = g.op("cast", g.op("mul", g.op("abs", x), g.constant(np.float32(sz(2000, 2)))), dtype=DType.i32)
    g.set_outputs([g.op("gather", table, ids, axis=0), g.op("cast", g.op("argmax", x, axis=1),
                                                           dtype=DType.f32)])
    return g


def _random_graph():
    g = Graph("random")
    x = g.add_input("x", TensorType(("N", sz(1024, 4))))
    c = g.add_param("counter", np.array(17, np.int64))
    g.set_outputs([g.op("add", x, g.op("random_uniform", c, shape=("N", sz(1024, 4)), seed=7))])
    return g


def families():
    """(name, graph, passes, batch): one case per kernel family, realistic shapes."""
    conv = lambda g, x, w, b: g.op("relu", g.op("add", g.op("conv2d", x, w, pads=(1, 1, 1, 1)), b))  # noqa: E731
    return [
        ("elementwise: fused add+mul+tanh, broadcast", _graph(
            lambda g, x, b: g.op("tanh", g.op("mul", g.op("add", x, b), g.op("sigmoid", x))),
            [("N", sz(4096, 8)), (sz(4096, 8),)]), None, sz(512, 2)),
        ("elementwise: transpose", _graph(lambda g, x: g.op("transpose", x, perm=(0, 2, 1)),
                                          [("N", sz(256, 3), sz(512, 4))]), [], sz(64, 2)),
        ("reduce_sum axis -1 with prologue", _graph(
            lambda g, x, b: g.op("reduce_sum", g.op("square", g.op("sub", x, b)), axes=(1,)),
            [("N", sz(4096, 8)), (sz(4096, 8),)]), None, sz(512, 2)),
        ("reduce_max axis 0", _graph(lambda g, x: g.op("reduce_max", x, axes=(0,)),
                                     [("N", sz(1024, 3))]), [], sz(4096, 5)),
        ("reduce_mean axes (1,2)", _graph(lambda g, x: g.op("reduce_mean", x, axes=(1, 2)),
                                          [("N", sz(32, 3), sz(32, 3), sz(64, 2))]), [], sz(128, 2)),
        ("softmax [N,1000]", _graph(lambda g, x: g.op("softmax", x, axis=-1), [("N", sz(1000, 7))]),
         [], sz(512, 2)),
        ("matmul 1024x1024 + bias + relu", _graph(
            lambda g, x, w, b: g.op("relu", g.op("add", g.op("matmul", x, w), b)),
            [("N", sz(1024, 6)), (sz(1024, 6), sz(1024, 5)), (sz(1024, 5),)]),
         ["simplify", "fusion", "memory"], sz(1024, 3)),
        ("batched matmul", _graph(lambda g, a, b: g.op("matmul", a, b),
                                  [("N", sz(128, 3), sz(64, 4)), ("N", sz(64, 4), sz(128, 3))]),
         [], sz(64, 2)),
        ("conv2d 3x3 64->64 + bias + relu", _graph(
            conv, [("N", sz(32, 4), sz(32, 4), sz(64, 2)), (3, 3, sz(64, 2), sz(64, 3)), (sz(64, 3),)]),
         ["simplify", "fusion", "memory"], sz(32, 2)),
        ("matmul 1000x999 @ 999x1001 (tile edges)", _graph(
            lambda g, x, w: g.op("matmul", x, w), [("N", sz(999, 7)), (sz(999, 7), sz(1001, 9))]),
         [], sz(1000, 3)),
        ("conv2d 3x3 stride 2 'same' 64->128", _graph(
            lambda g, x, w: g.op("conv2d", x, w, strides=(2, 2), pads=(0, 1, 0, 1)),
            [("N", sz(32, 5), sz(32, 5), sz(64, 3)), (3, 3, sz(64, 3), sz(128, 4))]), [], sz(32, 2)),
        ("conv2d 1x1 256->64", _graph(lambda g, x, w: g.op("conv2d", x, w),
                                      [("N", sz(16, 3), sz(16, 3), sz(256, 5)), (1, 1, sz(256, 5), sz(64, 3))]),
         [], sz(64, 2)),
        ("conv2d 3x3 dilation 2, 2 groups", _graph(
            lambda g, x, w: g.op("conv2d", x, w, dilations=(2, 2), pads=(2, 2, 2, 2), groups=2),
            [("N", sz(16, 5), sz(16, 5), sz(64, 4)), (3, 3, sz(32, 2), sz(64, 4))]), [], sz(32, 2)),
        ("conv2d_backprop_kernel 3x3 64->64 (split-K)", _graph(
            lambda g, x, dy: g.op("conv2d_backprop_kernel", x, dy, kernel=(3, 3), pads=(1, 1, 1, 1)),
            [("N", sz(32, 4), sz(32, 4), sz(64, 2)), ("N", sz(32, 4), sz(32, 4), sz(64, 3))]), [], sz(32, 2)),
        ("conv2d_transpose 3x3 stride 2 64->32", _graph(
            lambda g, x, w: g.op("conv2d_transpose", x, w, strides=(2, 2), pads=(1, 0, 1, 0)),
            [("N", sz(16, 3), sz(16, 3), sz(64, 2)), (3, 3, sz(32, 3), sz(64, 2))]), [], sz(32, 2)),
        ("max_pool2d 2x2", _graph(lambda g, x: g.op("max_pool2d", x, window=(2, 2), strides=(2, 2)),
                                  [("N", sz(32, 4), sz(32, 4), sz(64, 2))]), [], sz(64, 2)),
        ("gather (embedding) + argmax", _gather_graph(), [], sz(256, 2)),
        ("random_uniform (bit-identical)", _random_graph(), [], sz(4096, 2)),
        ("avg_pool2d 3x3 same", _graph(
            lambda g, x: g.op("avg_pool2d", x, window=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1)),
            [("N", sz(32, 4), sz(32, 4), sz(64, 2))]), [], sz(64, 2)),
    ]


def check_families(results):
    ok = True
    print("\n## kernel families vs the CPU target (max error relative to max |value|)\n")
    print("| family | batch | max rel err | GPU ms (incl. transfers) | CPU ms | ok |")
    print("|---|---|---|---|---|---|")
    for name, g, passes, batch in families():
        kw = {} if passes is None else {"passes": passes}
        gpu, cpu = kiln.compile(g, target="cuda", **kw), kiln.compile(g, **kw)
        xs = [rng.standard_normal(v.type.concrete({"N": batch})).astype(np.float32) for v in g.inputs]
        want, got = cpu(*xs), gpu(*xs)
        pairs = list(zip(got, want)) if isinstance(got, tuple) else [(got, want)]
        err = max(float(np.max(np.abs(a - b)) / max(1e-30, float(np.max(np.abs(b))))) for a, b in pairs)
        t_gpu = _time(lambda: gpu(*xs), 5)
        t_cpu = _time(lambda: cpu(*xs), 5)
        good = err <= RTOL and all(a.shape == b.shape for a, b in pairs)
        ok &= good
        results["families"].append(dict(name=name, batch=batch, rel_err=err, gpu_ms=t_gpu, cpu_ms=t_cpu))
        print(f"| {name} | {batch} | {err:.2e} | {t_gpu:.3f} | {t_cpu:.3f} | {'yes' if good else 'NO'} |")
    return ok


def _time(fn, rounds, sync=None):
    fn()
    if sync:
        sync()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def bandwidth(results, cuda):
    """A fused elementwise kernel on device-resident data vs a device-to-device copy."""
    n_rows, cols = sz(16384, 2), sz(4096, 16)    # 64M floats: 256 MiB per tensor
    g = _graph(lambda g, x, y: g.op("relu", g.op("add", x, g.op("mul", y, g.constant(np.float32(0.5))))),
               [("N", cols), ("N", cols)])
    exe = kiln.compile(g, target="cuda")
    (k, node), (fn, _) = exe.program.steps[0], exe._kernels[0]
    a = cuda.to_device(rng.random(n_rows * cols, dtype=np.float32))
    b = cuda.to_device(rng.random(n_rows * cols, dtype=np.float32))
    out = cuda.device_array(n_rows * cols, np.float32)
    grid, block = k.launch_dims({"N": n_rows})
    dev = dict(zip(exe.graph.inputs, (a, b)))
    args = [out, *[dev[v] for v in node.inputs]]         # the group's operands, in its order
    ms = _time(lambda: fn[grid, block](*args, n_rows), 10, cuda.synchronize)
    np.testing.assert_allclose(out.copy_to_host()[:1000],
                               np.maximum(a.copy_to_host()[:1000] + 0.5 * b.copy_to_host()[:1000], 0),
                               rtol=1e-6)
    copy_ms = _time(lambda: out.copy_to_device(a), 10, cuda.synchronize)
    nbytes = n_rows * cols * 4
    kern = 3 * nbytes / ms / 1e6          # GB/s: two reads, one write
    copy = 2 * nbytes / copy_ms / 1e6     # a copy reads and writes
    results["bandwidth"] = dict(kernel_gbs=kern, copy_gbs=copy, ratio=kern / copy, grid=grid, block=block)
    print(f"\n## fused elementwise bandwidth\n\nkernel {kern:.0f} GB/s, device copy {copy:.0f} GB/s: "
          f"{100 * kern / copy:.0f}% of copy bandwidth (target >= 70%), grid={grid} block={block}")


# -- GEMM throughput ---------------------------------------------------------------------------

GEMM_SHAPES = ("matmul", "implicit_gemm")


def gemm_cases():
    """(name, graph, batch, flops(batch), torch twin(batch, torch) -> callable or None)."""
    mk, hw, c = sz(4096, 12), sz(56, 5), sz(64, 3)
    conv_flops = lambda n: 2 * n * hw * hw * 9 * c * c          # noqa: E731

    def t_mm(n, torch):
        a, b = torch.randn(n, mk, device="cuda"), torch.randn(mk, mk, device="cuda")
        return lambda: torch.matmul(a, b)

    def t_conv(n, torch):
        x, w = torch.randn(n, c, hw, hw, device="cuda"), torch.randn(c, c, 3, 3, device="cuda")
        return lambda: torch.nn.functional.conv2d(x, w, padding=1)

    def t_wgrad(n, torch):
        x, dy = torch.randn(n, c, hw, hw, device="cuda"), torch.randn(n, c, hw, hw, device="cuda")
        return lambda: torch.nn.grad.conv2d_weight(x, (c, c, 3, 3), dy, padding=1)

    def t_tconv(n, torch):
        x, w = torch.randn(n, c, hw, hw, device="cuda"), torch.randn(c, c, 3, 3, device="cuda")
        return lambda: torch.nn.functional.conv_transpose2d(x, w, padding=1)

    return [
        (f"matmul {mk}^3 + bias + relu", _graph(
            lambda g, x, w, b: g.op("relu", g.op("add", g.op("matmul", x, w), b)),
            [("N", mk), (mk, mk), (mk,)]), mk, lambda n: 2 * n * mk * mk, t_mm),
        (f"conv2d 3x3 {c}->{c} {hw}x{hw} + bias + relu", _graph(
            lambda g, x, w, b: g.op("relu", g.op("add", g.op("conv2d", x, w, pads=(1, 1, 1, 1)), b)),
            [("N", hw, hw, c), (3, 3, c, c), (c,)]), sz(64, 2), conv_flops, t_conv),
        (f"conv2d_backprop_kernel 3x3 {c}->{c} {hw}x{hw}", _graph(
            lambda g, x, dy: g.op("conv2d_backprop_kernel", x, dy, kernel=(3, 3), pads=(1, 1, 1, 1)),
            [("N", hw, hw, c), ("N", hw, hw, c)]), sz(64, 2), conv_flops, t_wgrad),
        (f"conv2d_transpose 3x3 {c}->{c} {hw}x{hw}", _graph(
            lambda g, x, w: g.op("conv2d_transpose", x, w, pads=(1, 1, 1, 1)),
            [("N", hw, hw, c), (3, 3, c, c)]), sz(64, 2), conv_flops, t_tconv),
    ]


def _gemm_launcher(exe, batch, cuda):
    """The executable's GEMM kernel launched alone on device-resident operands."""
    prog = exe.program
    (k, node), (fn, zero) = next((st, f) for st, f in zip(prog.steps, exe._kernels) if st[0].shape in GEMM_SHAPES)
    bindings = {s: batch for s in prog.symbols}

    def dev(v):
        kind = prog.storage.get(v, ("",))
        if kind[0] == "param":
            return exe._dparams[exe._param_names[kind[1]]]
        n = int(np.prod(v.type.concrete(bindings)))
        return cuda.to_device(rng.standard_normal(n).astype(np.float32))
    ins = [dev(v) for v in node.inputs]
    out = cuda.device_array(int(np.prod(node.outputs[0].type.concrete(bindings))), np.float32)
    dims = k.launch_dims(bindings)
    zdims = k.zero_dims(bindings) if k.zero_grid else None
    syms = [batch] * len(prog.symbols)

    def launch():
        if zero is not None:
            zero[zdims](out, *syms)
        fn[dims](out, *ins, *syms)
    return launch, dims


def gemm_throughput(results, cuda, configs):
    """TFLOP/s of the register-tiled GEMM kernels (kiln/codegen/cuda/kernels_gemm.py) on
    device-resident data, for each tile configuration, against torch (cuBLAS / cuDNN, TF32
    off) when importable."""
    from kiln.runtime.cuda_executable import compile_cuda
    try:
        import torch
        torch = torch if torch.cuda.is_available() else None
        if torch is not None:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
    except ImportError:
        torch = None
    print("\n## GEMM kernels: TFLOP/s on device-resident data (fp32)\n")
    print("| kernel | batch | config tile (bm x bn x bk / tm x tn; fit_tile may reshape it) | grid | block "
          "| kiln ms | kiln TFLOP/s | torch TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, g, batch, flops, twin in gemm_cases():
        t_torch = None
        if torch is not None and not SMOKE:
            fn = twin(batch, torch)
            t_torch = _time(fn, 10, torch.cuda.synchronize)
        for cfg in configs:
            exe = compile_cuda(g, passes=["simplify", "fusion", "memory"], config=cfg)
            launch, dims = _gemm_launcher(exe, batch, cuda)
            ms = _time(launch, 10, cuda.synchronize)
            tf = flops(batch) / ms / 1e9
            tt = flops(batch) / t_torch / 1e9 if t_torch else None
            tile = f"{cfg.bm}x{cfg.bn}x{cfg.bk} / {cfg.tm}x{cfg.tn}"
            results["gemm"].append(dict(name=name, batch=batch, tile=tile, grid=dims[0], ms=ms,
                                        tflops=tf, torch_tflops=tt))
            print(f"| {name} | {batch} | {tile} | {dims[0]} | {dims[1]} | {ms:.3f} | {tf:.2f} | "
                  f"{f'{tt:.2f}' if tt else '-'} |")


def tile_configs(spec):
    """--tiles 'bm,bn,bk,tm,tn;...' -> LaunchConfigs (default: the real-GPU LaunchConfig)."""
    from kiln.codegen.cuda import SIMULATOR, LaunchConfig
    if SMOKE:
        return [SIMULATOR]
    if not spec:
        return [LaunchConfig()]
    out = []
    for part in spec.split(";"):
        bm, bn, bk, tm, tn = (int(v) for v in part.split(","))
        out.append(LaunchConfig(bm=bm, bn=bn, bk=bk, tm=tm, tn=tn))
    return out


def ptx_report(configs, arch="sm_90"):
    """Without a GPU: compile every GEMM case's kernels to PTX with numba and the CUDA
    toolkit's NVVM (CUDA_HOME), then ``ptxas -v``: registers, spills, shared memory, and
    whether any local array stayed in local memory. Returns False on a failure."""
    import math
    import shutil
    import subprocess
    import tempfile
    from numba import cuda, types
    from kiln.codegen.cuda import lower_graph
    from kiln.runtime.executable import optimize_graph
    ptxas = shutil.which("ptxas") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ptxas")
    ns0 = {"cuda": cuda, "math": math, **{t: getattr(types, t) for t in ("float32", "float64", "int32", "int64")}}
    cc = (int(arch[3:-1]), int(arch[-1]))
    ok = True
    print(f"\n## GEMM kernels compiled for {arch} (no GPU needed)\n")
    print("| kernel | config tile | block | local memory | ptxas |")
    print("|---|---|---|---|---|")
    for cfg in configs:
        for name, g, *_ in gemm_cases():
            _, opt = optimize_graph(g, ["simplify", "fusion", "memory"], True, None, "ptx")
            prog = lower_graph(opt, cfg)
            for k, n in prog.steps:
                if k.shape not in GEMM_SHAPES:
                    continue
                ns = dict(ns0)
                exec(compile(k.source, k.name, "exec"), ns)  # noqa: S102
                syms = (types.int64,) * len(prog.symbols)
                arrays = (types.float32[::1],) * (len(n.outputs) + len(n.inputs))
                try:
                    ptx, _ = cuda.compile_ptx(ns[k.name].py_func, arrays + syms, cc=cc)
                    if k.name + "_zero" in ns:
                        cuda.compile_ptx(ns[k.name + "_zero"].py_func, arrays[:1] + syms, cc=cc)
                    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
                        f.write(ptx)
                    r = subprocess.run([ptxas, f"-arch={arch}", "-O3", "-v", f.name, "-o", os.devnull],
                                       capture_output=True, text=True)
                    info = "; ".join(ln.split(":", 1)[-1].strip() for ln in r.stderr.splitlines()
                                     if "registers" in ln or "spill" in ln)
                    local = ".local" in ptx
                except Exception as e:      # noqa: BLE001 -- reported, the run goes on
                    info, local, ok = f"FAILED: {type(e).__name__}: {e}"[:200], "?", False
                tile = f"{cfg.bm}x{cfg.bn}x{cfg.bk} / {cfg.tm}x{cfg.tn}"
                print(f"| {name} | {tile} | {k.block} | {local} | {info} |")
    return ok


# -- models ------------------------------------------------------------------------------------

def models():
    kiln.utils.set_random_seed(0)
    d, w = sz(784, 6), sz(512, 5)
    mlp = kiln.Sequential([kiln.Input(shape=(d,)), layers.Dense(w, activation="relu"),
                           layers.Dense(w, activation="relu"), layers.Dense(10, activation="softmax")])
    hw, c1, c2 = sz(28, 10), sz(32, 2), sz(64, 2)
    cnn = kiln.Sequential([kiln.Input(shape=(hw, hw, 1)),
                           layers.Conv2D(c1, 3, activation="relu"), layers.MaxPooling2D(2),
                           layers.Conv2D(c2, 3, activation="relu"), layers.MaxPooling2D(2),
                           layers.Flatten(), layers.Dense(sz(128, 4), activation="relu"),
                           layers.Dense(10, activation="softmax")])
    rs = sz(32, 4)
    inp = kiln.Input(shape=(rs, rs, 3))
    h = layers.Conv2D(c1, 3, padding="same", activation="relu")(inp)
    for _ in range(2):
        r = layers.Conv2D(c1, 3, padding="same", activation="relu")(h)
        r = layers.Conv2D(c1, 3, padding="same")(r)
        h = layers.Activation("relu")(layers.Add()([h, r]))
    h = layers.GlobalAveragePooling2D()(h)
    resnet = kiln.Model(inp, layers.Dense(10, activation="softmax")(h))
    return {"mlp": (mlp, (d,)), "cnn": (cnn, (hw, hw, 1)), "resnet": (resnet, (rs, rs, 3))}


def torch_twin(name, model):
    """The same architecture and weights in PyTorch on the GPU, or None."""
    try:
        import torch
        if not torch.cuda.is_available():
            return None
    except ImportError:
        return None
    nn = torch.nn
    if name != "mlp":        # conv twins: NHWC in kiln, NCHW in torch (weights transposed)
        return _torch_conv_twin(name, model, torch)
    w = model.get_weights()
    tm = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                       nn.Linear(512, 10), nn.Softmax(dim=-1))
    with torch.no_grad():
        for lin, (k, b) in zip([tm[0], tm[2], tm[4]], zip(w[0::2], w[1::2])):
            lin.weight.copy_(torch.from_numpy(k.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    return tm.cuda().eval(), (lambda x: torch.from_numpy(x).cuda())


def _torch_conv_twin(name, model, torch):
    """The CNN's architecture in torch (its own random weights: timing only)."""
    nn = torch.nn
    if name == "cnn" and not SMOKE:
        tm = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                           nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128),
                           nn.ReLU(), nn.Linear(128, 10), nn.Softmax(dim=-1))
        return tm.cuda().eval(), (lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().cuda())
    return None               # the ResNet twin: timing only against kiln's CPU target


def bench_models(results, rounds, batch):
    print("\n## inference (ms per batch, inputs copied in and outputs out)\n")
    print("| model | batch | kiln cuda | kiln cpu | torch cuda | cpu/cuda | torch/kiln | max abs err |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (model, shape) in models().items():
        x = rng.random((batch, *shape), dtype=np.float32)
        try:
            gpu = kiln.compile(model, target="cuda")
        except NotImplementedError as e:
            print(f"| {name} | {batch} | not on the GPU yet: {e} | | | | | |")
            continue
        cpu = kiln.compile(model)
        err = float(np.max(np.abs(gpu(x) - cpu(x))))
        t_gpu, t_cpu = _time(lambda: gpu(x), rounds), _time(lambda: cpu(x), rounds)
        row = dict(model=name, batch=batch, gpu_ms=t_gpu, cpu_ms=t_cpu, max_abs_err=err)
        twin = torch_twin(name, model)
        t_torch = None
        if twin is not None:
            import torch
            tm, to_dev = twin
            with torch.no_grad():
                t_torch = _time(lambda: tm(to_dev(x)).cpu().numpy(), rounds)
            row["torch_ms"] = t_torch
        results["inference"].append(row)
        tt = f"{t_torch:.3f}" if t_torch else "-"
        ratio = f"{t_torch / t_gpu:.2f}" if t_torch else "-"
        print(f"| {name} | {batch} | {t_gpu:.3f} | {t_cpu:.3f} | {tt} | {t_cpu / t_gpu:.2f} | {ratio} | {err:.1e} |")


def bench_training(results, rounds, batch, steps=20):
    """The compiled training step (one graph) on the device vs the CPU target: loss curves
    step by step, and time per step."""
    print("\n## training step (SGD, categorical cross-entropy): loss curves and ms per step\n")
    print("| model | batch | kiln cuda ms | kiln cpu ms | max loss diff over steps | final loss gpu / cpu |")
    print("|---|---|---|---|---|---|")
    for name, (model, shape) in models().items():
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        x = rng.random((batch, *shape), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
        model.train_on_batch(x[:2], y[:2])             # builds the step graph
        g = model._train_step.train_graph
        try:
            gpu = kiln.compile(g, target="cuda", passes="training")
        except NotImplementedError as e:
            print(f"| {name} | {batch} | not on the GPU yet: {e} | | | |")
            continue
        cpu = kiln.compile(g, passes="training")
        sw, lr = np.ones(batch, np.float32), np.float32(0.01)
        lg = [float(gpu(x, y, sw, lr)) for _ in range(steps)]
        lc = [float(cpu(x, y, sw, lr)) for _ in range(steps)]
        diff = max(abs(a - b) for a, b in zip(lg, lc))
        t_gpu = _time(lambda: gpu(x, y, sw, lr), rounds)
        t_cpu = _time(lambda: cpu(x, y, sw, lr), rounds)
        results["training"].append(dict(model=name, batch=batch, gpu_ms=t_gpu, cpu_ms=t_cpu,
                                        losses_gpu=lg, losses_cpu=lc))
        print(f"| {name} | {batch} | {t_gpu:.3f} | {t_cpu:.3f} | {diff:.2e} | {lg[-1]:.4f} / {lc[-1]:.4f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--tiles", default="",
                    help="GEMM tile configs to time, 'bm,bn,bk,tm,tn;...' (default: LaunchConfig())")
    ap.add_argument("--ptx", action="store_true",
                    help="no GPU: compile the GEMM kernels to PTX (CUDA_HOME's NVVM) and run ptxas -v")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny shapes, numba's simulator allowed: checks the script itself")
    args = ap.parse_args(argv)
    global SMOKE
    SMOKE = args.smoke
    if args.ptx:
        return 0 if ptx_report(tile_configs(args.tiles)) else 1
    if SMOKE:
        args.rounds, args.batch = 1, 2
    elif os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("gpu_check: unset NUMBA_ENABLE_CUDASIM: this script is for a real GPU", file=sys.stderr)
        return 2
    if not hasattr(np, "row_stack"):
        # numba-cuda 0.30 registers an overload for np.row_stack at its first kernel compile;
        # numpy 2.5 removed it (seen on the H200 image: numba-cuda 0.30.4, numpy 2.5.2)
        np.row_stack = np.vstack
    from kiln.codegen.cuda.device import cuda_module
    cuda = cuda_module()
    try:
        dev = cuda.get_current_device()
        name, cc = dev.name.decode() if isinstance(dev.name, bytes) else dev.name, dev.compute_capability
    except AttributeError:      # the simulator (--smoke)
        name, cc = "SIMULATOR", None
    print(f"# kiln gpu_check on {name} (compute capability {cc})")
    from kiln.codegen.cuda import LaunchConfig
    print(f"launch config (real GPUs): {LaunchConfig()}")
    results = {"device": name, "families": [], "inference": [], "training": [], "gemm": []}
    ok = check_families(results)
    bandwidth(results, cuda)
    gemm_throughput(results, cuda, tile_configs(args.tiles))
    if not args.skip_models:
        bench_models(results, args.rounds, args.batch)
        bench_training(results, max(3, args.rounds // 4), args.batch)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print("\nall kernel families match the CPU" if ok else "\nSOME KERNEL FAMILIES DISAGREE WITH THE CPU")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
