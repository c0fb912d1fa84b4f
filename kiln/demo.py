"""``kiln demo``: the first thing to run. Trains the Keras MNIST convnet, adapted to the
bundled 8x8 digits, with kiln's compiled training step, and leaves every artifact the
compiler makes in one directory.

The model is Keras' "simple MNIST convnet" (Conv2D 32 / MaxPooling2D / Conv2D 64 /
MaxPooling2D / Flatten / Dropout / Dense softmax) with ``padding="same"`` on the
convolutions, since an 8x8 image would shrink to nothing with "valid" padding, and a
Dense(128) layer before the Dropout. Data flows through ``kiln.data.Dataset`` (seeded
shuffle, batches, prefetch on a background thread); the whole run is seeded, so its
numbers repeat from run to run on one machine.
"""
from __future__ import annotations

import time
from pathlib import Path


def build_model():
    import kiln
    L = kiln.layers
    return kiln.Sequential([
        kiln.Input(shape=(8, 8, 1)),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ], name="digits_cnn")


def run(output="kiln-demo", epochs=20, batch_size=32, seed=0, verbose=1, out=print) -> dict:
    """Train, evaluate, save, export, dump; returns the numbers and artifact paths."""
    import numpy as np

    import kiln
    from kiln.data import Dataset, train_test_split

    t0 = time.perf_counter()
    outdir = Path(output)
    outdir.mkdir(parents=True, exist_ok=True)
    kiln.utils.set_random_seed(seed)

    (x_train, y_train), (x_test, y_test) = kiln.datasets.digits.load_data()
    x_train = (x_train / 16.0).astype("float32")[..., None]     # pixels 0..16 -> [0, 1]
    x_test = (x_test / 16.0).astype("float32")[..., None]
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.1,
                                                      seed=seed, stratify=y_train)
    out(f"data: UCI handwritten digits (8x8, bundled in kiln/datasets/data): "
        f"{len(x_train)} train / {len(x_val)} validation / {len(x_test)} test images")
    train = (Dataset.from_tensor_slices((x_train, y_train))
             .shuffle(len(x_train), seed=seed).batch(batch_size).prefetch())

    model = build_model()
    model.summary(print_fn=out)
    model.compile(optimizer=kiln.optimizers.Adam(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    out(f"\ntraining {epochs} epochs (each batch is one call of the compiled training step):")
    t_fit = time.perf_counter()
    history = model.fit(train, epochs=epochs, validation_data=(x_val, y_val), verbose=verbose)
    t_fit = time.perf_counter() - t_fit
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    out(f"\ntest accuracy: {acc:.2%} (loss {loss:.4f}) on {len(x_test)} held-out images; "
        f"training took {t_fit:.1f} s")

    artifacts = {}
    for suffix in (".keras", ".h5"):       # once kiln's saving lands (model.save)
        if hasattr(model, "save"):
            path = outdir / f"digits_cnn{suffix}"
            model.save(str(path))
            artifacts[f"model ({suffix})"] = path
    ir_dir = outdir / "ir"
    try:
        exported = kiln.export(model, outdir / "export", name="digits_cnn", dump_dir=ir_dir)
        artifacts["C library"] = outdir / "export" / "libdigits_cnn.so"
        artifacts["C header"] = outdir / "export" / "digits_cnn.h"
        artifacts["C example"] = outdir / "export" / "main.c"
        del exported
    except RuntimeError as e:          # no C compiler: the JIT still dumps the IR
        out(f"export skipped: {e}")
        kiln.compile(model, dump_dir=ir_dir)
    artifacts["IR after every pass"] = ir_dir

    exe = kiln.compile(model)
    probs = exe(x_test[:5])
    text = str(exe.ir).splitlines()
    ir_lines = text[:1] + [l for l in text if l.startswith("  %") and "fusion(" in l][:3]
    out("\nthe compiled inference graph (the optimized IR; fused groups are regions):")
    for line in ir_lines:
        out("  " + (line if len(line) <= 100 else line[:97] + "..."))
    out(f"predictions for 5 test images: {np.argmax(probs, axis=1).tolist()} "
        f"(true: {y_test[:5].tolist()})")

    out(f"\nartifacts in {outdir}/:")
    for what, path in artifacts.items():
        out(f"  {what:<22} {path}")
    dumps = sorted(p.name for p in ir_dir.iterdir())
    out(f"  ({len(dumps)} dumps: {', '.join(dumps[:3])}, ..., {dumps[-1]})" if len(dumps) > 3
        else f"  ({', '.join(dumps)})")
    spec = artifacts.get("model (.keras)", "models.py:NAME")
    out(f"\nnext: less {ir_dir}/00-lower.kir         (the IR as lowered; then each pass)\n"
        f"      kiln dump {spec} --after all\n"
        f"      the first comment of {outdir}/export/main.c builds a C program around the model\n"
        f"      README.md 'Data': kiln.data.Dataset reads CSV, HDF5, SQL, .npz and generators")
    out(f"done in {time.perf_counter() - t0:.1f} s")
    return {"test_accuracy": float(acc), "test_loss": float(loss),
            "val_accuracy": history.history.get("val_accuracy", []),
            "artifacts": {k: str(v) for k, v in artifacts.items()}}
