"""The [passes] figures on the models they are promised for: fusion at least halves the
kernels per call, the arena stays within 15% of the live-bytes lower bound, and
BatchNormalization disappears into the convolutions of a small ResNet."""
import numpy as np
import pytest

import kiln
from kiln import layers as L
from kiln.passes import PassManager, pipeline
from kiln.passes.memory import report


def kernels(g, bindings=None):
    """Kernel launches per call: a scan runs its body's kernels once per step."""
    total = 0
    for n in g.nodes:
        if n.op.family in ("reshape", "constant"):
            continue
        if n.op.name == "scan":
            seq = n.inputs[n.attrs["num_carries"]]
            steps = seq.type.shape[n.attrs["axis"]]
            total += 1 + steps * kernels(n.regions[0])
        else:
            total += 1
    return total


def resnet(hw=16):
    """conv+BN+relu stem; 3 residual blocks (32/64/128 channels, stride-2 downsampling
    with 1x1 projections); global average pool; Dense 10."""
    x = kiln.Input(shape=(hw, hw, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", use_bias=False)(x)))
    for ch, stride in [(32, 1), (64, 2), (128, 2)]:
        y = L.Conv2D(ch, 3, strides=stride, padding="same", use_bias=False)(h)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(ch, 3, padding="same", use_bias=False)(y))
        sc = h if stride == 1 else L.BatchNormalization()(L.Conv2D(ch, 1, strides=stride, use_bias=False)(h))
        h = L.ReLU()(L.Add()([y, sc]))
    return kiln.Model(x, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h)))


def models():
    kiln.utils.set_random_seed(0)
    return {
        "mlp": kiln.Sequential([kiln.Input(shape=(784,)), L.Dense(512, activation="relu"),
                                L.Dense(512, activation="relu"), L.Dense(10, activation="softmax")]),
        "cnn": kiln.Sequential([L.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                                L.MaxPooling2D((2, 2)), L.Conv2D(64, (3, 3), activation="relu"),
                                L.MaxPooling2D((2, 2)), L.Conv2D(128, (3, 3), activation="relu"),
                                L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5),
                                L.Dense(10, activation="softmax")]),
        "resnet": resnet(),
        "lstm": kiln.Sequential([kiln.Input(shape=(64,), dtype="int32"), L.Embedding(10000, 64),
                                 L.LSTM(128), L.Dense(1, activation="sigmoid")]),
    }


@pytest.fixture(scope="module")
def compiled():
    return {name: (m, kiln.lower(m), kiln.compile(m)) for name, m in models().items()}


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "lstm"])
def test_fusion_halves_the_kernels(compiled, name):
    _, lowered, exe = compiled[name]
    assert kernels(exe.graph) * 2 <= kernels(lowered), (kernels(lowered), kernels(exe.graph))


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "lstm"])
def test_arena_within_15_percent_of_the_lower_bound(compiled, name):
    r = report(compiled[name][2].graph, {"N": 32})
    assert r["lower_bound_bytes"] <= r["arena_bytes"] <= 1.15 * r["lower_bound_bytes"]


def test_resnet_arena_against_the_naive_plan(compiled):
    _, lowered, exe = compiled["resnet"]
    fused = report(exe.graph, {"N": 32})
    unfused = report(PassManager(["simplify", "constfold", "layout", "constfold", "dce", "memory"])
                     .run(lowered), {"N": 32})
    # every intermediate of the unfused graph in its own slot is the naive plan
    assert fused["arena_bytes"] <= 0.5 * unfused["naive_bytes"]
    assert fused["arena_bytes"] <= 0.6 * fused["naive_bytes"]


def test_resnet_batchnorm_is_folded_and_outputs_match(compiled):
    m, lowered, exe = compiled["resnet"]
    names = set(exe.graph.params)      # regions take values only through operands
    assert not any("batch_normalization" in n for n in names), names
    ops = {n.op.name for n in exe.graph.nodes}
    for n in exe.graph.nodes:
        ops |= {b.op.name for r in n.regions for b in r.nodes}
    assert not {"sqrt", "div", "sub"} & ops        # BN's arithmetic is gone, not just fused
    x = np.random.default_rng(0).standard_normal((3, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(exe(x), kiln.interpret(lowered, x), rtol=1e-5, atol=1e-6)


def test_mlp_dump_shows_each_pass(compiled, capsys, tmp_path):
    exe = kiln.compile(compiled["mlp"][0], dump_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.kir"))
    assert len(files) == 1 + len(pipeline("inference"))
    fusion_stage = (tmp_path / files[pipeline("inference").index("fusion") + 1]).read_text()
    assert fusion_stage.count("= fusion(") == 3 and "^(%p0" in fusion_stage
    assert "@arena[" in exe.ir
