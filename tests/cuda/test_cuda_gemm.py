"""The register-tiled GEMM kernels (kiln/codegen/cuda/kernels_gemm.py) under the
simulator: matmul and the implicit-GEMM convolutions against numpy formulas written
here and against the CPU target, at sizes that are and are not multiples of the
simulator's tile (8 x 8 blocks of 2 x 2 per thread, k slices of 4), with the symbolic
batch bound to several sizes by one compiled executable."""
import numpy as np
import pytest

import kiln
from kiln.codegen.cuda import SIMULATOR
from kiln.ir import Graph, TensorType

rng = np.random.default_rng(11)
RTOL = 1e-5


def data(shape):
    return rng.standard_normal(shape).astype(np.float32)


def build_graph(build, operands):
    """build(g, *values): operands with 'N' are inputs, the others parameters."""
    g = Graph("t")
    vals, params = [], []
    for i, shape in enumerate(operands):
        if "N" in shape:
            vals.append(g.add_input(f"x{i}", TensorType(shape)))
        else:
            params.append(data(shape))
            vals.append(g.add_param(f"p{i}", params[-1]))
    out = build(g, *vals)
    g.set_outputs([out])
    return g, params


def close(got, want):
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale)


def run(build, operands, formula, batches, passes=(), shapes=None):
    """Compile once for the GPU and the CPU; at each batch size compare the GPU with
    ``formula(*inputs, *params)`` (float64 numpy) and with the CPU target."""
    g, params = build_graph(build, operands)
    kw = {"passes": list(passes)}
    gpu, cpu = kiln.compile(g, target="cuda", **kw), kiln.compile(g, **kw)
    if shapes is not None:
        assert [k.shape for k, _ in gpu.program.steps] == shapes
    for n in batches:
        xs = [data(v.type.concrete({"N": n})) for v in g.inputs]
        got = gpu(*xs)
        want = formula(*[a.astype(np.float64) for a in (*xs, *params)])
        assert got.shape == want.shape and got.dtype == np.float32
        close(got, want)
        close(got, cpu(*xs))
    return gpu


def test_simulator_tile_is_small():
    assert (SIMULATOR.bm, SIMULATOR.bn, SIMULATOR.bk, SIMULATOR.tm, SIMULATOR.tn) == (8, 8, 4, 2, 2)


# -- matmul ---------------------------------------------------------------------------------

@pytest.mark.parametrize("k,p", [(7, 9), (8, 16), (13, 3), (4, 8)])
def test_matmul_edges_and_multiples(cuda, k, p):
    run(lambda g, a, b: g.op("matmul", a, b), [("N", k), (k, p)], lambda a, b: a @ b,
        batches=(1, 8, 11), shapes=["matmul"])


@pytest.mark.parametrize("shapes,formula", [           # formula(inputs..., params...)
    ([("N", 5, 7), ("N", 7, 9)], lambda a, b: a @ b),        # batched, both operands
    ([(1, 9, 5), ("N", 5, 3)], lambda b, a: a @ b),          # a broadcast batch of 1
    ([("N", 2, 10, 3), (2, 3, 6)], lambda a, b: a @ b),      # B broadcast along N
])
def test_batched_and_broadcast_matmul(cuda, shapes, formula):
    run(lambda g, a, b: g.op("matmul", a, b), shapes, formula, batches=(1, 3))


def test_matmul_bias_relu_and_residual_epilogue_fused(cuda):
    def build(g, x, w, b, r):
        return g.op("relu", g.op("add", g.op("add", g.op("matmul", x, w), b), r))
    exe = run(build, [("N", 11), (11, 10), (10,), ("N", 10)],
              lambda x, r, w, b: np.maximum(x @ w + b + r, 0), batches=(2, 9),
              passes=("simplify", "fusion", "memory"), shapes=["matmul"])
    assert exe.program.steps[0][1].op.name == "fusion"


def test_matmul_epilogue_source_and_launch_in_dump():
    from kiln.runtime.cuda_executable import cuda_source
    g, _ = build_graph(lambda g, x, w, b: g.op("relu", g.op("add", g.op("matmul", x, w), b)),
                       [("N", 128), (128, 256), (256,)])
    text = cuda_source(g, passes=["simplify", "fusion", "memory"])
    assert "matmul kernel" in text and "block=(16, 16)" in text      # 64x64 tiles, 4x4/thread
    assert "cuda.shared.array((16, 66), float32)" in text              # k-major A, padded rows
    assert "cuda.local.array(16, float32)" in text
    assert text.count("out0[") == 16                                    # one store per accumulator


# -- conv2d -----------------------------------------------------------------------------------

def np_conv2d(x, w, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1):
    (sh, sw), (dh, dw) = strides, dilations
    xp = np.pad(x, ((0, 0), pads[:2], pads[2:], (0, 0)))
    kh, kw, cg, O = w.shape
    ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    og = O // groups
    out = np.zeros((x.shape[0], ho, wo, O))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for q in range(groups):
                out[..., q * og:(q + 1) * og] += patch[..., q * cg:(q + 1) * cg] @ w[i, j, :, q * og:(q + 1) * og]
    return out


CONVS = [  # (x shape without N, kernel, attrs)
    ((5, 6, 3), (3, 3, 3, 5), dict()),                                     # 3x3 valid
    ((5, 5, 2), (3, 3, 2, 9), dict(pads=(1, 1, 1, 1))),                    # 3x3 same
    ((6, 5, 3), (3, 3, 3, 4), dict(strides=(2, 2), pads=(0, 1, 1, 1))),    # stride 2 same
    ((4, 5, 6), (1, 1, 6, 10), dict()),                                    # 1x1
    ((5, 6, 2), (2, 3, 2, 3), dict(dilations=(2, 1), pads=(1, 1, 2, 0))),  # dilation, asymmetric
    ((4, 4, 4), (3, 2, 2, 6), dict(groups=2, strides=(1, 2))),            # grouped (GEMM per group)
]


@pytest.mark.parametrize("xs,ws,kw", CONVS)
def test_conv2d_implicit_gemm(cuda, xs, ws, kw):
    run(lambda g, x, w: g.op("conv2d", x, w, **kw), [("N", *xs), ws],
        lambda x, w: np_conv2d(x, w, **kw), batches=(1, 3), shapes=["implicit_gemm"])


def test_depthwise_conv2d_stays_a_point_kernel(cuda):
    run(lambda g, x, w: g.op("conv2d", x, w, groups=3, pads=(1, 1, 1, 1)), [("N", 4, 4, 3), (3, 3, 1, 6)],
        lambda x, w: np_conv2d(x, w, groups=3, pads=(1, 1, 1, 1)), batches=(2,), shapes=["point"])


def test_conv2d_bias_relu_residual_fused(cuda):
    def build(g, x, r, w, b):
        return g.op("relu", g.op("add", g.op("add", g.op("conv2d", x, w, pads=(1, 1, 1, 1)), b), r))
    run(build, [("N", 4, 5, 3), ("N", 4, 5, 10), (3, 3, 3, 10), (10,)],
        lambda x, r, w, b: np.maximum(np_conv2d(x, w, pads=(1, 1, 1, 1)) + b + r, 0),
        batches=(1, 2), passes=("simplify", "fusion", "memory"), shapes=["implicit_gemm"])


# -- conv2d gradients -------------------------------------------------------------------------

def np_backprop_kernel(x, dy, kernel, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1):
    (sh, sw), (dh, dw), (kh, kw) = strides, dilations, kernel
    xp = np.pad(x, ((0, 0), pads[:2], pads[2:], (0, 0)))
    _, ho, wo, O = dy.shape
    cg, og = x.shape[3] // groups, O // groups
    dw_ = np.zeros((kh, kw, cg, O))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for q in range(groups):
                dw_[i, j, :, q * og:(q + 1) * og] = np.einsum(
                    "nhwc,nhwo->co", patch[..., q * cg:(q + 1) * cg], dy[..., q * og:(q + 1) * og])
    return dw_


@pytest.mark.parametrize("xs,kernel,o,kw,splits", [      # splits: at least, at N=4
    ((5, 5, 2), (3, 3), 3, dict(), 1),
    ((5, 6, 3), (3, 3), 9, dict(strides=(2, 2), pads=(1, 1, 1, 1)), 1),
    ((4, 5, 4), (2, 3), 4, dict(dilations=(1, 2), pads=(1, 0, 2, 1), groups=2), 1),
    ((5, 3, 5), (1, 1), 3, dict(), 4),        # 60 rows at N=4: chunks of 16, the last ragged
    ((3, 4, 4), (1, 2), 4, dict(groups=2), 2),
])
def test_conv2d_backprop_kernel_split_k_gemm(cuda, xs, kernel, o, kw, splits):
    attrs = {"strides": (1, 1), "dilations": (1, 1), "pads": (0, 0, 0, 0), "groups": 1, **kw}
    dy_t = kiln.ir.OPS["conv2d"].infer(TensorType(("N", *xs)), TensorType((*kernel, xs[2] // attrs["groups"], o)),
                                       **attrs)
    exe = run(lambda g, x, dy: g.op("conv2d_backprop_kernel", x, dy, kernel=kernel, **kw),
              [("N", *xs), dy_t.shape], lambda x, dy: np_backprop_kernel(x, dy, kernel, **kw),
              batches=(1, 4), shapes=["implicit_gemm"])
    k = exe.program.steps[0][0]
    assert k.zero_grid                               # partial tiles add into a zeroed result
    (_, _, z), _ = k.launch_dims({"N": 4})
    assert z % attrs["groups"] == 0 and z // attrs["groups"] >= splits     # split-K chunks


def np_conv2d_transpose(x, w, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), output_padding=(0, 0)):
    n, h, wd, _ = x.shape
    kh, kw, o, _ = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    full = np.zeros((n, (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0],
                     (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1], o))
    for y in range(h):
        for xx in range(wd):
            for i in range(kh):
                for j in range(kw):
                    full[:, y * sh + i * dh, xx * sw + j * dw] += x[:, y, xx] @ w[i, j].T
    return full[:, pads[0]:full.shape[1] - pads[1], pads[2]:full.shape[2] - pads[3]]


@pytest.mark.parametrize("kw", [dict(), dict(strides=(2, 2), pads=(1, 0, 1, 1), output_padding=(1, 0)),
                                dict(dilations=(2, 1), pads=(1, 1, 0, 0)), dict(strides=(1, 2))])
def test_conv2d_transpose_implicit_gemm(cuda, kw):
    run(lambda g, x, w: g.op("conv2d_transpose", x, w, **kw), [("N", 3, 3, 3), (3, 2, 5, 3)],
        lambda x, w: np_conv2d_transpose(x, w, **kw), batches=(1, 2), shapes=["implicit_gemm"])


@pytest.mark.parametrize("ws,kw", [((1, 1, 4, 3), dict(strides=(2, 2))),                 # phases no tap reaches
                                   ((2, 3, 4, 3), dict(strides=(3, 2), pads=(1, 0, 0, 2)))])
def test_strided_conv2d_transpose_phases_with_fused_bias(cuda, ws, kw):
    def build(g, x, w, b):
        return g.op("tanh", g.op("add", g.op("conv2d_transpose", x, w, **kw), b))
    exe = run(build, [("N", 3, 2, 3), ws, (4,)],
              lambda x, w, b: np.tanh(np_conv2d_transpose(x, w, **kw) + b), batches=(1, 2),
              passes=("simplify", "fusion", "memory"), shapes=["implicit_gemm"])
    (_, _, z), _ = exe.program.steps[0][0].launch_dims({"N": 2})
    assert z == kw["strides"][0] * kw["strides"][1]            # one GEMM per output phase


def test_tile_reshaped_for_narrow_or_short_gemms():
    from kiln.codegen.cuda import LaunchConfig
    from kiln.codegen.cuda.kernels_gemm import fit_tile
    gpu = LaunchConfig()
    assert (gpu.bm, gpu.bn, gpu.bk, gpu.tm, gpu.tn) == (64, 64, 16, 4, 4)
    narrow = fit_tile(gpu, None, 16)            # a 16-channel conv: 128 x 32 tiles, same threads
    assert (narrow.bm, narrow.bn, narrow.bk) == (128, 32, 8)
    short = fit_tile(gpu, 27, 256)              # a 3x3x3 kernel gradient: 32 x 128
    assert (short.bm, short.bn, short.bk) == (32, 128, 8)
    assert fit_tile(gpu, None, 64) is gpu and fit_tile(gpu, 10, 10) is gpu
