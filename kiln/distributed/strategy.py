"""``DataParallel``: the strategy object, and the training step it gives a model.

Every rank runs the same script on the same data. Per global batch of B samples,
rank r takes the contiguous shard ``shard(B)`` (``B // size`` samples, one more on the
first ``B % size`` ranks; a rank can get none when B < size), runs the compiled grads
graph on it, scales the gradients and assigned variables by ``n_r / B``, and the ONE
``Allreduce(SUM)`` of the packed buffer gives every rank the global mean gradient,
the weighted average of the moving statistics and the global metric increments. The
apply graph then does the identical update on every rank (kiln/distributed/split.py).

Bit-identical weights rest on two facts: the Allreduce hands every rank the same sums
(Open MPI's algorithms for a commutative op do; the tests check it), and every rank runs
the same machine code for the apply graph. The code is tuned for each host's CPU: on
machines of different CPU types (FMA on some, not others) the ranks may drift apart by
rounding -- use one CPU type per job.
"""
from __future__ import annotations

import sys

import numpy as np

from ..frontend import callbacks as _callbacks
from ..frontend import random as _random
from ..runtime.executable import compile as _compile
from ..runtime.training import TrainStep
from .split import split_at_gradients

_ROOT_ONLY = (_callbacks.ModelCheckpoint, _callbacks.CSVLogger, _callbacks.ProgbarLogger)


class LocalComm:
    """A world of one process (the cut step without MPI: tests, and the reference the
    ranks are checked against). It has only what a one-rank strategy calls."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def bcast(self, obj, root=0):
        return obj

    def Barrier(self):
        pass


def _world():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("kiln.distributed needs mpi4py and an MPI library: "
                          "pip install 'kiln[distributed]' (MPI itself from the system "
                          "packages, e.g. apt-get install openmpi-bin libopenmpi-dev)") from None
    return MPI.COMM_WORLD


class DataParallel:
    """Data-parallel training over the MPI ranks of ``comm`` (default: every process
    ``mpirun`` started). Use: ``model.compile(..., distribute=kiln.distributed.DataParallel())``.

    Creating it (when there are several ranks) installs an exception hook: an uncaught
    exception on any rank prints its traceback, prefixed by the rank, and aborts the
    whole job (``MPI_Abort``) instead of leaving the other ranks waiting."""

    def __init__(self, comm=None, abort_on_error: bool = True):
        self.comm = comm if comm is not None else _world()
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        self.allreduces = 0        # Allreduce calls made by training steps (tests count them)
        if abort_on_error and self.size > 1:
            _install_excepthook(self.comm, self.rank, self.size)

    def __repr__(self):
        return f"<DataParallel rank {self.rank} of {self.size}>"

    @property
    def is_chief(self) -> bool:
        """Rank 0: the rank that prints and writes files."""
        return self.rank == 0

    # -- the global batch -------------------------------------------------------------------
    def shard(self, batch: int) -> tuple:
        """This rank's [begin, end) of a global batch of ``batch`` samples."""
        q, r = divmod(int(batch), self.size)
        begin = self.rank * q + min(self.rank, r)
        return begin, begin + q + (1 if self.rank < r else 0)

    # -- collectives ------------------------------------------------------------------------
    def allreduce(self, buf: np.ndarray) -> np.ndarray:
        """Sum ``buf`` over the ranks, in place (ONE MPI Allreduce)."""
        if self.size > 1:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self.allreduces += 1
        return buf

    def broadcast_weights(self, model):
        """Rank 0's values of every model variable, on every rank."""
        if self.size == 1:
            return
        from ..frontend.models.training import _all_weights
        for var in _all_weights(model):
            a = np.ascontiguousarray(np.array(var.value))
            self.comm.Bcast(a, root=0)
            if self.rank != 0:
                var.assign(a)

    def barrier(self):
        if self.size > 1:
            self.comm.Barrier()

    # -- hooks the model calls --------------------------------------------------------------
    def train_step(self, model, outputs, optimizer, targets, previous=None):
        """The compiled training step ``Model._get_step`` uses (instead of ``TrainStep``)."""
        return DataParallelStep(self, model, outputs, optimizer, targets, previous)

    def fit_setup(self, verbose, callbacks):
        """At the start of fit/evaluate: one shuffling order on every rank (rank 0's
        generator state); no progress bar and no file-writing callbacks (checkpoints,
        CSV logs) on the other ranks; a barrier at each epoch's end, so a checkpoint
        rank 0 wrote is on disk before any rank goes on."""
        if self.size > 1:
            gen = _random.generator()
            gen.bit_generator.state = self.comm.bcast(gen.bit_generator.state, root=0)
        cbs = list(callbacks or [])
        if self.rank != 0:
            verbose = 0
            cbs = [c for c in cbs if not isinstance(c, _ROOT_ONLY)]
        if self.size > 1:
            cbs.append(_Barrier(self))
        return verbose, cbs


class _Barrier(_callbacks.Callback):
    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy

    def on_epoch_end(self, epoch, logs=None):
        self.strategy.barrier()

    def on_train_end(self, logs=None):
        self.strategy.barrier()


class DataParallelStep(TrainStep):
    """``TrainStep`` with its graph cut at the gradients: ``grad_exe`` per shard, one
    Allreduce, then ``train_exe`` (the apply graph), which owns the weights, the
    optimizer state, the moving statistics and the metric accumulators -- everything
    ``TrainStep`` reads from ``train_exe.params`` (pull, push, evaluation) is there."""

    def __init__(self, strategy, model, outputs, optimizer, targets, previous=None):
        super().__init__(model, outputs, optimizer, targets, previous)
        self.strategy = strategy
        self.grad_exe = None

    def _build_train(self):
        self.strategy.broadcast_weights(self.model)
        super()._build_train()

    def _compile_train(self, g):
        split = split_at_gradients(g, self.grads, set(self.opt_layout), set(self.train_state),
                                   set(self.variables))
        self.split = split
        self.grad_exe = _compile(split.grads_graph, passes="training")
        apply_exe = _compile(split.apply_graph, passes="training")
        prev = self._previous
        if prev is not None and getattr(prev, "grad_exe", None) is not None:
            for name, buf in self.grad_exe.params.items():
                if name.startswith("rng.") and name in prev.grad_exe.params:
                    np.copyto(buf, prev.grad_exe.params[name])
        # the grads graph reads the weights straight from the apply graph's buffers
        self._fed = [apply_exe.params[n] for n in split.fed]
        return apply_exe

    def train_batch(self, xs, ys, sws) -> dict:
        self._ensure_train()
        lr = self.optimizer._learning_rate
        if lr.__class__ is not float:
            lr = self.optimizer.learning_rate_at(self.optimizer_iterations())
        batch = len(ys[0])
        b, e = self.strategy.shard(batch)
        if e > b:
            buf = self.grad_exe(*[a[b:e] for a in xs], *[a[b:e] for a in ys],
                                *[a[b:e] for a in sws], *self._fed)
            if e - b != batch:
                buf[:self.split.scaled] *= np.float32((e - b) / batch)
        else:                                        # fewer samples than ranks
            buf = np.zeros(self.split.size, np.float32)
        self.strategy.allreduce(buf)
        outs = self.train_exe(buf, np.asarray(lr, np.float32))
        self.dirty = True
        self.eval_stale = True
        outs = outs if isinstance(outs, tuple) else (outs,)
        return {k: float(v) for k, v in zip(self.names, outs)}


def _install_excepthook(comm, rank, size):
    previous = sys.excepthook
    if getattr(previous, "_kiln_abort", False):       # one hook, however many strategies
        return

    def hook(tp, value, tb):
        try:
            sys.stdout.flush()
            sys.stderr.write(f"kiln.distributed: rank {rank} of {size} failed; aborting the "
                             f"job\n")
            previous(tp, value, tb)
            sys.stderr.flush()
        finally:
            comm.Abort(1)
    hook._kiln_abort = True
    sys.excepthook = hook
