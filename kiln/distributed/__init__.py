"""Data-parallel training across processes and machines, on MPI (mpi4py).

One line in a training script::

    strategy = kiln.distributed.DataParallel()
    model.compile(optimizer="adam", loss=..., metrics=[...], distribute=strategy)
    model.fit(x, y, batch_size=256, epochs=5)      # 256 = the GLOBAL batch

and the launch: ``mpirun -n 4 python train.py`` (several machines:
``mpirun -n 8 --hostfile hosts python train.py``, a hostfile line per machine such as
``node1 slots=4``; every machine needs the script, the data and the same Python env).

- Each rank compiles the same training graph, cut at the gradients into a grads graph
  and an apply graph (kiln/distributed/split.py); each takes its contiguous shard of
  every global batch (``strategy.shard``), and the gradients, the BatchNormalization
  moving statistics and the metric increments travel in ONE packed f32 buffer through
  ONE ``MPI_Allreduce`` per step (kiln/distributed/strategy.py). The apply graph then
  updates identically everywhere: the ranks hold bit-identical weights.
- Start-up broadcasts rank 0's weights (unseeded initializers are fine) and, at each
  ``fit``, rank 0's shuffling state. The loss and metrics are global values on every
  rank; the progress bar, ``ModelCheckpoint`` and ``CSVLogger`` run on rank 0 only, with
  a barrier at each epoch's end so every rank can load what rank 0 wrote. For an
  explicit ``model.save(...)`` write ``if strategy.is_chief:``.
- An uncaught exception on any rank prints that rank's traceback and aborts the job.
- Evaluation (``evaluate``, validation data) is not sharded: each rank computes the
  same values on the whole data.
"""
from .split import Split, SplitError, split_at_gradients
from .strategy import DataParallel, DataParallelStep, LocalComm

__all__ = ["DataParallel", "DataParallelStep", "LocalComm", "Split", "SplitError",
           "split_at_gradients"]
