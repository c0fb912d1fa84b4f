"""Data-parallel scaling: training steps per second on R ranks (one global batch each).

    mpirun -n 1 python bench/distributed_scaling.py     # the same step, one rank
    mpirun -n 2 python bench/distributed_scaling.py     # (as root: --allow-run-as-root)
    python bench/distributed_scaling.py --plain         # no strategy: the uncut step

Set KILN_NUM_THREADS per rank (cores / ranks for a fair comparison). An MLP
784-512-512-10, Adam, global batch 256 (``--batch``), synthetic data.
"""
import argparse
import time

import numpy as np

import kiln
from kiln import layers

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--steps", type=int, default=60)
ap.add_argument("--plain", action="store_true")
a = ap.parse_args()

strategy = None if a.plain else kiln.distributed.DataParallel()
kiln.utils.set_random_seed(0)
m = kiln.Sequential([kiln.Input(shape=(784,)), layers.Dense(512, activation="relu"),
                     layers.Dense(512, activation="relu"), layers.Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", distribute=strategy)
rng = np.random.default_rng(0)
x = rng.random((a.batch, 784), dtype=np.float32)
y = rng.integers(0, 10, a.batch)
for _ in range(5):
    m.train_on_batch(x, y)                    # compile, warm up
if strategy is not None:
    strategy.barrier()
t = time.perf_counter()
for _ in range(a.steps):
    m.train_on_batch(x, y)
dt = time.perf_counter() - t
if strategy is None or strategy.is_chief:
    ranks = 1 if strategy is None else strategy.size
    print(f"{'plain' if strategy is None else f'{ranks} rank(s)'}: global batch {a.batch}: "
          f"{a.steps / dt:.1f} steps/s ({a.steps * a.batch / dt:.0f} samples/s)")
