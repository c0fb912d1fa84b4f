"""Where kiln's time goes, kernel by kernel, on the benchmark models (kiln only: no peer
is imported, so it runs in the test environment too).

    python bench/kernel_profile.py --models mlp,cnn --batch 1,256 --train

prints, per model, ``kiln.profile.report`` of the inference executable at each batch
size and (``--train``) of the compiled training step (Adam, batch 128).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["KILN_PROFILE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import kiln  # noqa: E402
import models as M  # noqa: E402

DEFS = {"mlp": (M._mlp_def, (784,), "float32"), "cnn": (M._cnn_def, (28, 28, 1), "float32"),
        "resnet": (M._resnet_def, (32, 32, 3), "float32"),
        "lstm": (M._lstm_def, (64,), "int32"), "transformer": (M._transformer_def, (128, 128), "float32")}


def sample(shape, dtype, batch, seed=0):
    rng = np.random.default_rng(seed)
    if dtype.startswith("int"):
        return rng.integers(0, 10000, (batch, *shape)).astype(dtype)
    return rng.random((batch, *shape), dtype=np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn,resnet,lstm,transformer")
    ap.add_argument("--batch", default="1,256")
    ap.add_argument("--seconds", type=float, default=1.0, help="time spent calling each executable")
    ap.add_argument("--train", action="store_true", help="also profile the training step (batch 128)")
    ap.add_argument("--top", type=int, default=0, help="show only the N slowest kernels")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:       # the training step's executables take the default thread count
        os.environ["KILN_NUM_THREADS"] = str(a.threads)
    for name in a.models.split(","):
        define, shape, dtype = DEFS[name]
        kiln.utils.set_random_seed(0)
        model = define(kiln.layers, kiln.Input, kiln.Model)
        exe = kiln.compile(model, threads=a.threads)
        for bs in map(int, a.batch.split(",")):
            x = sample(shape, dtype, bs)
            for _ in range(3):
                exe(x)
            kiln.profile.reset(exe)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < a.seconds:
                exe(x)
            print(f"\n## {name} inference, batch {bs}\n")
            print(kiln.profile.report(exe, top=a.top or None))
        if a.train:
            loss = "binary_crossentropy" if name == "lstm" else "sparse_categorical_crossentropy"
            model.compile(optimizer=kiln.optimizers.Adam(1e-3), loss=loss)
            x = sample(shape, dtype, 128 * 8)
            y = (np.random.default_rng(1).integers(0, 2, (len(x), 1)).astype(np.float32) if name == "lstm"
                 else np.random.default_rng(1).integers(0, 10, len(x)).astype(np.int32))
            model.fit(x, y, batch_size=128, epochs=1, verbose=0)
            step = model._train_step
            kiln.profile.reset(step.train_exe)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < a.seconds:
                model.fit(x, y, batch_size=128, epochs=1, verbose=0)
            print(f"\n## {name} training step (Adam, batch 128)\n")
            print(kiln.profile.report(step.train_exe, top=a.top or None))


if __name__ == "__main__":
    main()
