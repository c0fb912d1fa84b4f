"""Run under ``mpirun -n R python worker.py SCENARIO OUTDIR`` by test_mpi.py.

``main``: trains with ``DataParallel`` and writes ``rank<r>.npz`` (weights, History,
moving statistics, checkpoint loads, Allreduce counts) per rank; rank 0 also trains
the same models in one process on the whole global batch (``ref_*`` entries).
``fail``: the last rank raises between two ``fit`` calls while the others train.
"""
import json
import os
import sys

import numpy as np

import kiln
from kiln import layers

SCENARIO, OUT = sys.argv[1], sys.argv[2]
strategy = kiln.distributed.DataParallel()
R, r = strategy.size, strategy.rank

rng = np.random.default_rng(0)
X = rng.normal(size=(50, 6)).astype("float32")
Y = rng.integers(0, 3, 50)
SW = rng.uniform(0.5, 2.0, 50).astype("float32")


def mlp(seed, distribute, dropout=False, bn=False):
    kiln.utils.clear_session()       # the same names: one architecture compiles once (cache)
    kiln.utils.set_random_seed(seed)
    body = [layers.Dense(16, activation="relu")]
    if dropout:
        body.append(layers.Dropout(0.25))
    if bn:
        body.append(layers.BatchNormalization())
    m = kiln.Sequential([kiln.Input(shape=(6,)), *body, layers.Dense(3, activation="softmax")])
    m.compile(optimizer=kiln.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"], distribute=distribute)
    return m


class Recording(kiln.callbacks.ModelCheckpoint):
    saves = 0

    def _save(self, path):
        Recording.saves += 1
        super()._save(path)


if SCENARIO == "fail":
    m = mlp(1, strategy)
    m.fit(X, Y, batch_size=10, epochs=1, verbose=0)
    if r == R - 1:
        raise RuntimeError(f"injected failure on rank {r}")
    m.fit(X, Y, batch_size=10, epochs=50, verbose=0)     # blocks in the Allreduce
    sys.exit(0)

out = {}
# 1. equivalence: batch 12 of 50 samples (a last batch of 2: some ranks get no sample
#    when R = 3), sample weights, shuffling, 2 epochs
m = mlp(1, strategy)
h = m.fit(X, Y, sample_weight=SW, batch_size=12, epochs=2, verbose=0)
out.update({f"w{i}": w for i, w in enumerate(m.get_weights())})
out["history"] = json.dumps(h.history)
out["allreduces"] = strategy.allreduces
out["steps"] = m.optimizer.iterations
if r == 0:
    ref = mlp(1, None)
    hr = ref.fit(X, Y, sample_weight=SW, batch_size=12, epochs=2, verbose=0)
    out.update({f"ref_w{i}": w for i, w in enumerate(ref.get_weights())})
    out["ref_history"] = json.dumps(hr.history)

# 2. different seeds per rank (as unseeded runs): rank 0's weights and shuffle win
m = mlp(100 + r, strategy, dropout=True)
m.fit(X, Y, batch_size=16, epochs=1, verbose=0)
out.update({f"seeded_w{i}": w for i, w in enumerate(m.get_weights())})

# 3. BatchNormalization: one step on an even split; moving statistics averaged
m = mlp(2, strategy, bn=True)
m.train_on_batch(X[:12], Y[:12])
bn = [w for w in m.weights if "moving" in w.path]
out.update({f"bn_{i}": np.array(w.value) for i, w in enumerate(bn)})
if r == 0:
    ref = mlp(2, None, bn=True)
    ref.train_on_batch(X[:12], Y[:12])
    rbn = [w for w in ref.weights if "moving" in w.path]
    out.update({f"ref_bn_{i}": np.array(w.value) for i, w in enumerate(rbn)})

# 4. checkpoints: written by rank 0 only, loaded by every rank after fit
ck = os.path.join(OUT, "ckpt.npz")          # np.savez of get_weights()
m = mlp(3, strategy)
m.fit(X, Y, batch_size=10, epochs=2, verbose=0,
      callbacks=[Recording(ck, save_weights_only=True, monitor="loss")])
fresh = mlp(4, None)
with np.load(ck) as f:
    fresh.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
out["ckpt_saves"] = Recording.saves
out["ckpt_matches"] = all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(),
                                                                m.get_weights()))
np.savez(os.path.join(OUT, f"rank{r}.npz"), **out)
