"""kiln against Keras-JAX (a jitted ``stateless_call``: XLA on the CPU) on models that are
NOT the benchmark's five: a GRU, a Conv1D text model, a MobileNet-style stack of
depthwise-separable blocks, a conv autoencoder, a bidirectional LSTM, an MLP with
BatchNormalization / GELU / LayerNormalization / swish, a small U-Net and a
SeparableConv2D model. It finds the kernels kiln lacks a fast path for (a depthwise
conv on the generic loop nest was one) -- a screen, not the benchmark: no PyTorch /
ONNX Runtime twins, medians of 3 rounds.

    python bench/more_models.py [--models gru,mobilenet] [--rounds 3]

Each model is defined once as a function of a layers namespace, built in kiln and in
Keras with the same weights (BatchNormalization statistics randomized), outputs
checked equal, then batch-1 latency and batch-256 time are printed with the ratio
(XLA time / kiln time: > 1 means kiln is faster).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def gru(L, Input, Model):
    x = Input(shape=(50,), dtype="int32")
    h = L.GRU(64, name="g")(L.Embedding(5000, 32, name="e")(x))
    return Model(x, L.Dense(1, activation="sigmoid", name="d")(h))


def conv1d(L, Input, Model):
    x = Input(shape=(100,), dtype="int32")
    h = L.Conv1D(128, 5, activation="relu", name="c1")(L.Embedding(5000, 64, name="e")(x))
    h = L.Conv1D(128, 5, activation="relu", name="c2")(L.MaxPooling1D(2, name="p")(h))
    return Model(x, L.Dense(2, activation="softmax", name="d")(L.GlobalMaxPooling1D(name="g")(h)))


def mobilenet(L, Input, Model):
    x = Input(shape=(64, 64, 3))
    h = L.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="c0")(x)
    h = L.ReLU(6.0, name="r0")(L.BatchNormalization(name="b0")(h))
    for i, (c, s) in enumerate([(64, 1), (128, 2), (128, 1), (256, 2)]):
        h = L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, name=f"dw{i}")(h)
        h = L.ReLU(6.0, name=f"rd{i}")(L.BatchNormalization(name=f"bd{i}")(h))
        h = L.Conv2D(c, 1, use_bias=False, name=f"pw{i}")(h)
        h = L.ReLU(6.0, name=f"rp{i}")(L.BatchNormalization(name=f"bp{i}")(h))
    return Model(x, L.Dense(10, activation="softmax", name="d")(L.GlobalAveragePooling2D(name="gap")(h)))


def autoencoder(L, Input, Model):
    x = Input(shape=(28, 28, 1))
    h = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="c1")(x)
    h = L.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="c2")(h)
    h = L.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu", name="t1")(h)
    return Model(x, L.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid", name="t2")(h))


def bilstm(L, Input, Model):
    x = Input(shape=(32, 16))
    return Model(x, L.Dense(5, activation="softmax", name="d")(L.Bidirectional(L.LSTM(64), name="b")(x)))


def mlp_norm(L, Input, Model):
    x = Input(shape=(256,))
    h = L.Activation("gelu", name="a")(L.BatchNormalization(name="bn")(L.Dense(512, name="d1")(x)))
    h = L.Dense(512, name="d2")(L.Dropout(0.1, name="dr")(h))
    h = L.Activation("swish", name="s")(L.LayerNormalization(name="ln")(h))
    return Model(x, L.Dense(10, activation="softmax", name="d3")(h))


def unet(L, Input, Model):
    x = Input(shape=(32, 32, 3))
    a = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    b = L.Conv2D(32, 3, padding="same", activation="relu", name="c2")(L.MaxPooling2D(2, name="p")(a))
    h = L.Concatenate(name="cat")([a, L.UpSampling2D(2, name="u")(b)])
    h = L.AveragePooling2D(2, name="ap")(L.Conv2D(16, 3, padding="same", activation="relu", name="c3")(h))
    return Model(x, L.Conv2D(1, 1, activation="sigmoid", name="c4")(h))


def separable(L, Input, Model):
    x = Input(shape=(32, 32, 3))
    h = L.SeparableConv2D(32, 3, padding="same", activation="relu", name="s1")(x)
    h = L.SeparableConv2D(64, 3, strides=2, padding="same", activation="elu", name="s2")(h)
    return Model(x, L.Dense(10, name="d")(L.Flatten(name="f")(h)))


MODELS = {f.__name__: f for f in (gru, conv1d, mobilenet, autoencoder, bilstm, mlp_norm, unet, separable)}


def twins(define, seed=0):
    """(kiln model, Keras model) with the same weights."""
    import keras

    import kiln
    km = define(kiln.layers, kiln.Input, kiln.Model)
    ke = define(keras.layers, keras.Input, keras.Model)
    rng = np.random.default_rng(seed)
    for layer in km.layers:
        w = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":     # fresh statistics are the identity
            gamma, beta, mean, var = w
            w = [gamma, beta, (0.1 * rng.standard_normal(mean.shape)).astype(np.float32),
                 (0.5 + np.abs(rng.standard_normal(var.shape))).astype(np.float32)]
            layer.set_weights(w)
        if w:
            ke.get_layer(layer.name).set_weights(w)
    return km, ke


def median_time(fn, x, calls):
    for _ in range(5):
        fn(x)
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    import jax

    import kiln
    print("| model | max abs diff | kiln b1 | XLA b1 | ratio | kiln b256 | XLA b256 | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models.split(","):
        km, ke = twins(MODELS[name])
        inp = km.inputs[0]
        shape, is_int = tuple(inp.shape[1:]), "int" in str(getattr(inp, "dtype", ""))
        rng = np.random.default_rng(1)

        def sample(n):
            if is_int:
                return rng.integers(0, 5000, (n, *shape)).astype(np.int32)
            return rng.random((n, *shape), dtype=np.float32)
        f = kiln.compile(km).wait_optimized()     # the optimized tier, not the quick one
        tv = [jax.numpy.array(v.value) for v in ke.trainable_variables]
        ntv = [jax.numpy.array(v.value) for v in ke.non_trainable_variables]
        jitted = jax.jit(lambda tv, ntv, x: ke.stateless_call(tv, ntv, x, training=False)[0])

        def xla(x):
            return np.asarray(jitted(tv, ntv, x))
        x1, xb = sample(1), sample(256)
        err = float(np.max(np.abs(f(xb) - xla(xb))))
        row = [name, f"{err:.1e}"]
        for x, calls in ((x1, 200), (xb, 20)):
            k = statistics.median(median_time(f, x, calls) for _ in range(a.rounds))
            j = statistics.median(median_time(xla, x, calls) for _ in range(a.rounds))
            row += [f"{k * 1e3:.3f} ms", f"{j * 1e3:.3f} ms", f"{j / k:.2f}"]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
