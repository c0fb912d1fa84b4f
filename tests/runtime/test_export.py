"""kiln.export: a model as libNAME.so + NAME.h + main.c, run from C with no Python.

Each exported model is compiled into its example main.c with the system C compiler
(the build command written in main.c's comment), run in a subprocess whose only
environment variable is LD_LIBRARY_PATH, fed inputs from a file, and its outputs are
compared with kiln.compile's: bit for bit for --target-cpu host (the same passes,
codegen and O3 pipeline), within 1e-6 for generic x86-64.
"""
import hashlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType
from kiln.runtime.export import export

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")
C_TESTS = Path(__file__).parent / "export_c"


# -- models ----------------------------------------------------------------------------------

def mlp_model():
    kiln.utils.set_random_seed(0)
    return kiln.Sequential([kiln.Input(shape=(784,)),
                            kiln.layers.Dense(512, activation="relu"),
                            kiln.layers.Dense(512, activation="relu"),
                            kiln.layers.Dense(10, activation="softmax")])


def cnn_model():
    """A small CNN: conv 3x3 'same' + relu, 2x2 max pool, conv, pool, dense, softmax --
    Keras layers where kiln has them, else the same network from IR ops."""
    L = kiln.layers
    if not (hasattr(L, "Conv2D") and hasattr(L, "MaxPooling2D")):
        return cnn_graph()
    kiln.utils.set_random_seed(3)
    return kiln.Sequential([kiln.Input(shape=(12, 12, 3)),
                            L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                            L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                            L.Flatten(), L.Dense(10, activation="softmax")])


def cnn_graph():
    """The CNN of cnn_model from IR ops."""
    rng = np.random.default_rng(3)
    g = Graph("cnn")
    x = g.add_input("image", TensorType(("N", 12, 12, 3)))
    h = x
    for i, (cin, cout) in enumerate([(3, 8), (8, 16)]):
        w = g.add_param(f"conv{i}.kernel", (rng.standard_normal((3, 3, cin, cout)) * 0.3).astype(np.float32))
        b = g.add_param(f"conv{i}.bias", (rng.standard_normal(cout) * 0.1).astype(np.float32))
        h = g.op("relu", g.op("add", g.op("conv2d", h, w, pads=(1, 1, 1, 1)), b))
        h = g.op("max_pool2d", h, window=(2, 2), strides=(2, 2))
    h = g.op("reshape", h, shape=(-1, 3 * 3 * 16))
    w = g.add_param("dense.kernel", (rng.standard_normal((144, 10)) * 0.2).astype(np.float32))
    b = g.add_param("dense.bias", np.zeros(10, np.float32))
    g.set_outputs([g.op("softmax", g.op("add", g.op("matmul", h, w), b), axis=-1)])
    return g


def two_io_graph():
    """Two inputs, two outputs (a softmax head and a tanh head, sharing a hidden layer)."""
    rng = np.random.default_rng(4)
    g = Graph("two_io")
    a = g.add_input("a", TensorType(("N", 16)))
    b = g.add_input("b", TensorType(("N", 8)))

    def p(name, *shape, s=0.3):
        return g.add_param(name, (rng.standard_normal(shape) * s).astype(np.float32))

    h = g.op("relu", g.op("add", g.op("add", g.op("matmul", a, p("wa", 16, 32)),
                                      g.op("matmul", b, p("wb", 8, 32))), p("bh", 32, s=0.1)))
    out1 = g.op("softmax", g.op("matmul", h, p("w1", 32, 4)), axis=-1)
    out2 = g.op("tanh", g.op("add", g.op("matmul", h, p("w2", 32, 5)), g.op("matmul", b, p("w3", 8, 5))))
    g.set_outputs([out1, out2])
    return g


# -- helpers ---------------------------------------------------------------------------------

def build_main(e, static=False) -> Path:
    """Compile main.c with the command its comment gives (or against the static archive)."""
    cmd = re.search(r"Build:\s+(.*)", e.main_c.read_text()).group(1)
    if static:
        cmd = f"cc -O2 -o {e.name}_main_static main.c -I. lib{e.name}.a -lm -lpthread"
    subprocess.run(shlex.split(cmd), cwd=e.outdir, check=True)
    return e.outdir / (f"{e.name}_main_static" if static else f"{e.name}_main")


def write_inputs(path, xs):
    path.write_bytes(b"".join(np.ascontiguousarray(x).tobytes() for x in xs))


def split_outputs(e, data: bytes, batch: int) -> list:
    outs, off = [], 0
    for t in e.abi.outputs:
        shape = tuple(batch if d < 0 else d for d in t.shape)
        n = int(np.prod(shape)) * t.dtype.itemsize
        outs.append(np.frombuffer(data[off:off + n], dtype=t.dtype.np).reshape(shape))
        off += n
    assert off == len(data)
    return outs


def run_c(exe_path, e, xs, batch, tmp, extra=()):
    """Run a compiled main with only LD_LIBRARY_PATH set; return its outputs."""
    inp, out = tmp / "in.bin", tmp / "out.bin"
    write_inputs(inp, xs)
    r = subprocess.run([str(exe_path), str(batch), str(inp), str(out), *extra],
                       env={"LD_LIBRARY_PATH": str(e.outdir)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return split_outputs(e, out.read_bytes(), batch)


def as_list(y):
    return list(y) if isinstance(y, tuple) else [y]


# -- fixtures: export once per module --------------------------------------------------------

@pytest.fixture(scope="module")
def mlp():
    return mlp_model()


@pytest.fixture(scope="module")
def mlp_jit(mlp):
    return kiln.compile(mlp)


@pytest.fixture(scope="module")
def mlp_host(mlp, tmp_path_factory):
    return export(mlp, tmp_path_factory.mktemp("mlp_host"), name="mlp", static=True)


@pytest.fixture(scope="module")
def mlp_generic(mlp, tmp_path_factory):
    return export(mlp, tmp_path_factory.mktemp("mlp_generic"), name="mlp_generic",
                  target_cpu="generic", weights="file")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    m = cnn_model()
    return m, export(m, tmp_path_factory.mktemp("cnn"), name="cnn")


@pytest.fixture(scope="module")
def two_io(tmp_path_factory):
    g = two_io_graph()
    return kiln.compile(g), export(g, tmp_path_factory.mktemp("two_io"), name="two_io")


# -- outputs against kiln.compile --------------------------------------------------------------

def test_mlp_host_matches_jit_bit_for_bit(mlp_jit, mlp_host, tmp_path):
    exe = mlp_jit
    main = build_main(mlp_host)
    x = np.random.default_rng(0).random((37, 784)).astype(np.float32)
    for n in (37, 1, 8):
        (got,) = run_c(main, mlp_host, [x[:n]], n, tmp_path)
        np.testing.assert_array_equal(got, exe(x[:n]))


def test_mlp_generic_within_1e6_and_weights_file(mlp_jit, mlp_generic, tmp_path):
    exe = mlp_jit
    main = build_main(mlp_generic)
    x = np.random.default_rng(1).random((16, 784)).astype(np.float32)
    (got,) = run_c(main, mlp_generic, [x], 16, tmp_path, [str(mlp_generic.weights_file)])
    np.testing.assert_allclose(got, exe(x), rtol=1e-6, atol=1e-6)


def test_cnn_host_matches_jit_bit_for_bit(cnn, tmp_path):
    g, e = cnn
    main = build_main(e)
    x = np.random.default_rng(2).standard_normal((5, 12, 12, 3)).astype(np.float32)
    (got,) = run_c(main, e, [x], 5, tmp_path)
    np.testing.assert_array_equal(got, kiln.compile(g)(x))


def test_two_inputs_two_outputs_match_jit_bit_for_bit(two_io, tmp_path):
    jit, e = two_io
    main = build_main(e)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((9, 16)).astype(np.float32)
    b = rng.standard_normal((9, 8)).astype(np.float32)
    got = run_c(main, e, [a, b], 9, tmp_path)
    want = as_list(jit(a, b))
    assert [o.shape for o in got] == [(9, 4), (9, 5)]
    for o, w in zip(got, want):
        np.testing.assert_array_equal(o, w)


@pytest.mark.skipif(not hasattr(kiln, "Model"), reason="kiln has no Functional Model yet")
def test_functional_model_two_inputs_two_outputs(tmp_path):
    L = kiln.layers
    kiln.utils.set_random_seed(6)
    a, b = kiln.Input(shape=(16,), name="a"), kiln.Input(shape=(8,), name="b")
    h = L.Dense(32, activation="relu")(L.concatenate([a, b]))
    probs = L.Dense(4, activation="softmax")(h)
    aux = L.Dense(5, activation="tanh")(L.add([L.Dense(5)(b), L.Dense(5)(h)]))
    m = kiln.Model(inputs=[a, b], outputs=[probs, aux])
    e = export(m, tmp_path / "fn", name="functional")
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((7, 16)).astype(np.float32), rng.standard_normal((7, 8)).astype(np.float32)]
    got = run_c(build_main(e), e, xs, 7, tmp_path)
    for o, w in zip(got, as_list(kiln.compile(m)(*xs)), strict=True):
        np.testing.assert_array_equal(o, w)


@pytest.mark.skipif(not hasattr(kiln.layers, "LSTM"), reason="kiln.layers has no LSTM yet")
@pytest.mark.parametrize("fused", [False, True])
def test_lstm_host_matches_jit_bit_for_bit(tmp_path, fused):
    """Both recurrence bodies -- the generic one, and one lstm_cell_packed per step
    (units filling whole panel blocks) -- run from C exactly as in the JIT."""
    from kiln.passes.layout import panel_width
    units = 2 * (panel_width() // 4) if fused else 2 * (panel_width() // 4) + 1
    kiln.utils.set_random_seed(5)
    m = kiln.Sequential([kiln.Input(shape=(7, 5)), kiln.layers.LSTM(units), kiln.layers.Dense(3)])
    assert ("lstm_cell_packed" in kiln.compile(m).ir) == fused
    e = export(m, tmp_path / "lstm", name="lstm")
    x = np.random.default_rng(7).standard_normal((40, 7, 5)).astype(np.float32)
    (got,) = run_c(build_main(e), e, [x], 40, tmp_path)
    np.testing.assert_array_equal(got, kiln.compile(m)(x))


def test_depthwise_winograd_and_attention_kernels_in_a_library(tmp_path):
    """The depthwise conv, Winograd conv and fused attention kernels (stack buffers,
    thread pool) run from C exactly as in the JIT."""
    L = kiln.layers
    kiln.utils.set_random_seed(9)
    inp = kiln.Input(shape=(8, 8, 16))
    h = L.DepthwiseConv2D(3, padding="same", activation="relu")(inp)
    h = L.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = L.Reshape((64, 16))(h)
    h = L.MultiHeadAttention(num_heads=2, key_dim=8)(h, h)
    m = kiln.Model(inp, L.Dense(3)(L.GlobalAveragePooling1D()(h)))
    ir = kiln.compile(m).ir
    assert "= attention(" in ir and "conv2d_winograd" in ir
    e = export(m, tmp_path / "dwatt", name="dwatt")
    x = np.random.default_rng(3).standard_normal((5, 8, 8, 16)).astype(np.float32)
    (got,) = run_c(build_main(e), e, [x], 5, tmp_path)
    np.testing.assert_array_equal(got, kiln.compile(m)(x))


def test_static_archive_links_and_runs(mlp_jit, mlp_host, tmp_path):
    main = build_main(mlp_host, static=True)
    needed = subprocess.run(["readelf", "-d", str(main)], capture_output=True, text=True).stdout
    assert "libmlp" not in needed
    # every global symbol of the archive carries the model's prefix (no clashes between models)
    nm = subprocess.run(["nm", "-g", "--defined-only", str(mlp_host.archive)], capture_output=True,
                        text=True, check=True).stdout
    syms = [line.split()[-1] for line in nm.splitlines() if line.strip() and not line.endswith(":")]
    assert syms and all(s.startswith("mlp_") for s in syms), syms
    x = np.random.default_rng(4).random((3, 784)).astype(np.float32)
    (got,) = run_c(main, mlp_host, [x], 3, tmp_path)
    np.testing.assert_array_equal(got, mlp_jit(x))


def test_host_export_is_the_jits_code(mlp_jit, mlp_host):
    """Same passes, same codegen, same O3 pipeline: the optimized LLVM IR is identical
    but for the entry's name."""
    exe = mlp_jit
    assert str(mlp_host.graph) == exe.ir
    assert mlp_host.code.ll_after.replace("@mlp__kiln_main", "@kiln_main") == exe.llvm_ir_optimized


# -- what the library depends on and exports ----------------------------------------------------

@pytest.mark.parametrize("which", ["mlp_host", "mlp_generic"])
def test_library_needs_only_libc_libm_pthread(which, request):
    e = request.getfixturevalue(which)
    dyn = subprocess.run(["readelf", "-d", str(e.library)], capture_output=True, text=True,
                         check=True).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", dyn))
    assert needed <= {"libc.so.6", "libm.so.6", "libpthread.so.0"}, needed
    ldd = subprocess.run(["ldd", str(e.library)], capture_output=True, text=True).stdout.lower()
    for bad in ("python", "numpy", "llvm", "numba"):
        assert bad not in ldd
    syms = subprocess.run(["nm", "-D", "--defined-only", str(e.library)], capture_output=True,
                          text=True, check=True).stdout.split()[2::3]
    assert syms and all(s.startswith(f"{e.name}_") for s in syms), syms
    assert f"{e.name}__kiln_main" not in syms and f"{e.name}__kiln_weights" not in syms


def test_generic_code_assumes_no_avx(mlp_generic):
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(mlp_generic.library)],
                         capture_output=True, text=True, check=True).stdout
    assert "%xmm" in asm                      # SSE2 is baseline x86-64
    assert "%ymm" not in asm and "%zmm" not in asm and "vfmadd" not in asm


def test_header_records_version_name_hash_and_tensors(mlp_generic):
    e = mlp_generic
    h = e.header.read_text()
    sha = hashlib.sha256(e.weights_file.read_bytes()).hexdigest()
    assert f'#define MLP_GENERIC_KILN_VERSION "{kiln.__version__}"' in h
    assert '#define MLP_GENERIC_MODEL_NAME "mlp_generic"' in h
    assert f'#define MLP_GENERIC_WEIGHTS_SHA256 "{sha}"' in h
    assert f"#define MLP_GENERIC_WEIGHTS_BYTES {e.weights_file.stat().st_size}ull" in h
    assert "#define MLP_GENERIC_WEIGHTS_EMBEDDED 0" in h
    assert "input_layer" in h and "f32[batch, 784]" in h and "f32[batch, 10]" in h
    for fn in ("create", "destroy", "run", "last_error", "workspace_size", "num_inputs",
               "num_outputs", "input_info", "output_info", "input_nbytes", "output_nbytes"):
        assert f" mlp_generic_{fn}(" in h


# -- the C API under bad arguments, threads, several models --------------------------------------

def compile_c_test(src, e, tmp, libs=()):
    exe = tmp / src.stem
    subprocess.run(["cc", "-O1", "-Wall", "-Werror", f"-DMODEL={e.name}", f'-DMODEL_H="{e.name}.h"',
                    str(src), "-I", str(e.outdir), "-L", str(e.outdir), f"-l{e.name}", *libs,
                    "-o", str(exe)], check=True)
    return exe


def test_bad_arguments_give_codes_and_messages(two_io, tmp_path):
    _, e = two_io
    exe = compile_c_test(C_TESTS / "api_errors.c", e, tmp_path)
    r = subprocess.run([str(exe)], env={"LD_LIBRARY_PATH": str(e.outdir)}, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {}
    for line in r.stdout.splitlines():
        key, _, rest = line.partition(" ")
        lines.setdefault(key, []).append(rest)
    res = {k: v[0].split(" ", 1) + [""] for k, v in lines.items()}
    code = {k: int(v[0]) for k, v in res.items() if not k.startswith(("info_", "meta"))}
    msg = {k: v[1] for k, v in res.items()}
    assert code["create_out_null"] == 1
    assert code["create_missing_file"] == 5 and "cannot open weights file" in msg["create_missing_file"]
    assert code["create_negative_threads"] == 1 and "num_threads must be >= 0" in msg["create_negative_threads"]
    assert code["threads_one"] == 1 and code["threads_three"] == 3
    assert code["create_ok"] == 0
    assert code["run_null_handle"] == 1 and "NULL" in msg["run_null_handle"]
    assert code["run_batch_zero"] == 1 and "batch must be >= 1, got 0" in msg["run_batch_zero"]
    assert code["run_batch_negative"] == 1 and "got -5" in msg["run_batch_negative"]
    assert code["run_inputs_null"] == 1 and "inputs is NULL" in msg["run_inputs_null"]
    assert code["run_outputs_null"] == 1 and "outputs is NULL" in msg["run_outputs_null"]
    assert code["run_input_elem_null"] == 1 and "inputs[1] ('b') is NULL" in msg["run_input_elem_null"]
    assert code["run_input_misaligned"] == 1 and "aligned" in msg["run_input_misaligned"]
    assert code["run_output_elem_null"] == 1 and "outputs[0] ('output_0')" in msg["run_output_elem_null"]
    assert code["run_workspace_small"] == 2 and "too small" in msg["run_workspace_small"]
    assert code["run_workspace_off_by_one"] == 2
    assert code["run_batch_huge"] == 1 and "too large" in msg["run_batch_huge"]
    assert msg["run_batch_zero"].startswith("two_io: ")
    for ok in ("run_ok", "run_ok_unaligned_workspace", "run_ok_null_workspace"):
        assert code[ok] == 0, msg[ok]
    assert code["query_input_info_out_of_range"] == 1
    assert code["query_output_info_out_of_range"] == 1
    assert code["query_input_nbytes_bad"] == 0
    assert code["query_workspace_bad_batch"] == 0 and code["query_workspace_overflow"] == 0
    assert msg["query_status_string_unknown"] == "unknown status"
    assert lines["info_input"] == ["a 0 2 -1 16", "b 0 2 -1 8"]
    assert lines["info_output"] == ["output_0 0 2 -1 4", "output_1 0 2 -1 5"]
    assert lines["meta"] == [f"two_io {kiln.__version__} {e.abi.weights_sha256} 1 "
                             f"{e.abi.weights_bytes} 1"]


def test_threads_on_two_handles_get_correct_results(two_io, tmp_path):
    jit, e = two_io
    exe = compile_c_test(C_TESTS / "threads.c", e, tmp_path, ["-lpthread"])
    rng = np.random.default_rng(5)
    args = []
    for k in "AB":
        xs = [rng.standard_normal((6, 16)).astype(np.float32), rng.standard_normal((6, 8)).astype(np.float32)]
        write_inputs(tmp_path / f"in{k}.bin", xs)
        write_inputs(tmp_path / f"out{k}.bin", as_list(jit(*xs)))
        args += [str(tmp_path / f"in{k}.bin"), str(tmp_path / f"out{k}.bin")]
    r = subprocess.run([str(exe), "6", *args, "300"], env={"LD_LIBRARY_PATH": str(e.outdir)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("0 of 300 runs wrong") == 4


def test_two_models_link_into_one_program(mlp_host, two_io, tmp_path):
    _, e2 = two_io
    exe = tmp_path / "two_models"
    subprocess.run(["cc", "-Wall", "-Werror", str(C_TESTS / "two_models.c"), "-I", str(mlp_host.outdir),
                    "-I", str(e2.outdir), "-L", str(mlp_host.outdir), "-L", str(e2.outdir), "-lmlp",
                    "-ltwo_io", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], env={"LD_LIBRARY_PATH": f"{mlp_host.outdir}:{e2.outdir}"},
                       capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == [f"mlp 1 1 {mlp_host.abi.weights_sha256}",
                                     f"two_io 2 2 {e2.abi.weights_sha256}"]


# -- weights in a file ---------------------------------------------------------------------------

def test_corrupted_or_wrong_weights_file_is_rejected(mlp_generic, tmp_path):
    e = mlp_generic
    main = build_main(e)
    x = np.random.default_rng(6).random((2, 784)).astype(np.float32)
    write_inputs(tmp_path / "in.bin", [x])
    good = e.weights_file.read_bytes()

    def run(*extra):
        return subprocess.run([str(main), "2", str(tmp_path / "in.bin"), str(tmp_path / "out.bin"),
                               *extra], env={"LD_LIBRARY_PATH": str(e.outdir)},
                              capture_output=True, text=True)

    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 1
    (tmp_path / "flipped.weights").write_bytes(bytes(flipped))
    r = run(str(tmp_path / "flipped.weights"))
    assert r.returncode == 1 and "corrupt" in r.stderr and e.abi.weights_sha256 in r.stderr
    (tmp_path / "short.weights").write_bytes(good[:-4])
    r = run(str(tmp_path / "short.weights"))
    assert r.returncode == 1 and f"has {len(good) - 4} bytes; this model needs {len(good)}" in r.stderr
    r = run(str(tmp_path / "missing.weights"))
    assert r.returncode == 1 and "cannot open weights file" in r.stderr
    r = run()   # a file-weights library given no file
    assert r.returncode == 1 and "pass the path of mlp_generic.weights" in r.stderr
    assert run(str(e.weights_file)).returncode == 0


def test_bad_thread_count_in_environment_is_an_error(two_io, tmp_path):
    _, e = two_io
    main = build_main(e)
    write_inputs(tmp_path / "in.bin", [np.zeros((1, 16), np.float32), np.zeros((1, 8), np.float32)])
    r = subprocess.run([str(main), "1", str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                       env={"LD_LIBRARY_PATH": str(e.outdir), "KILN_NUM_THREADS": "many"},
                       capture_output=True, text=True)
    assert r.returncode == 1 and "KILN_NUM_THREADS must be a positive integer, got 'many'" in r.stderr


# -- Python-side checks and the command line -------------------------------------------------------

def test_training_graphs_and_bad_options_are_rejected(tmp_path):
    g = Graph("train")
    x = g.add_input("x", TensorType(("N", 4)))
    w = g.add_param("w", np.ones((4, 4), np.float32))
    g.set_outputs([g.op("matmul", x, w)])
    g.add_update(w, g.op("mul", w, g.constant(np.float32(0.5))))
    with pytest.raises(ValueError, match="updates parameters in place \\(%w\\).*training graph"):
        export(g, tmp_path)
    ok = two_io_graph()
    with pytest.raises(ValueError, match="C identifier"):
        export(ok, tmp_path, name="my-model")
    with pytest.raises(ValueError, match="unknown target CPU 'pentium'"):
        export(ok, tmp_path, target_cpu="pentium")
    with pytest.raises(ValueError, match="weights must be one of embedded, file"):
        export(ok, tmp_path, weights="zip")
    with pytest.raises(TypeError, match="kiln.export expects a kiln model"):
        export(object(), tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_export(tmp_path):
    spec = tmp_path / "models.py"
    spec.write_text("import numpy as np\n"
                    "from kiln.ir import Graph, TensorType\n"
                    "def model():\n"
                    "    g = Graph('tiny')\n"
                    "    x = g.add_input('x', TensorType(('N', 3)))\n"
                    "    w = g.add_param('w', np.eye(3, dtype=np.float32))\n"
                    "    g.set_outputs([g.op('relu', g.op('matmul', x, w))])\n"
                    "    return g\n")
    out = tmp_path / "out"
    from kiln.cli import main
    assert main(["export", f"{spec}:model", "-o", str(out), "--name", "tio",
                 "--target-cpu", "x86-64-v3", "--weights", "file", "--static"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["libtio.a", "libtio.so", "main.c", "tio.h",
                                                      "tio.json", "tio.weights"]
    assert '#define TIO_TARGET_CPU "x86-64-v3"' in (out / "tio.h").read_text()
