"""The compiled training step: forward + loss + backward + optimizer update as ONE graph.

``TrainStep(model, config, targets)`` builds and compiles two executables:

- the **train step**: ``kiln.lower(model, training=True)`` (dropout masks from the
  counter-based RNG, BatchNormalization batch statistics and moving-statistic
  updates), the loss of every output (sample weights, Keras' "sum_over_batch_size"),
  the backward pass (``kiln.passes.autodiff.gradients``), gradient clipping, the
  optimizer's update (weight decay, slots, ``iterations``), and the metric
  accumulators. Everything that changes is a *state update* of the graph, done in
  place in the executable's own parameter buffers after each call.
- the **eval step**: the inference forward, loss and metric accumulators.

**State** (params updated in place): the trainable weights; non-trainable weights that
layers ``assign`` (moving statistics); the optimizer's slots, ``<opt>.iterations`` (i64)
and globals (Nadam's ``u_product``); ``rng.counter``; the metric accumulators
(``metrics.<name>.<state>``), reset by the host at each epoch.

**Fed per step** (graph inputs): the model inputs, ``y_true`` and ``sample_weight``
(f32[N]; class weights folded in; ones when absent) per output, and the f32 scalar
``learning_rate`` (the optimizer's schedule evaluated on the host at the current
``iterations``, so any schedule or LR callback works without recompiling). The batch
dimension is the symbol ``N``: the last, partial batch runs the same code.

**Outputs**: the running loss (the mean of the batch losses weighted by batch size, as
Keras' loss tracker), each metric's running value, and per-output losses for several
outputs -- in Keras' logs order.

**Where the weights live.** During training the weights live in the train
executable's parameter buffers; the model's ``Variable``\\ s are brought up to date
(``pull``) at the end of every epoch, at the end of ``fit``, and whenever the model's
``weights`` are read (``get_weights``, ``predict``, saving, callbacks). Weights changed
on the model side (``set_weights``) are copied into the buffers before the next step
(``push``, by Variable version). The eval executable gets the current weights copied in
before each evaluation. Weights the training graph does not update (frozen layers) are
folded into its code as constants; changing one makes the step stale (recompiled).

**Targets.** ``TrainStep(..., target="cuda")`` (``Model.compile(target="cuda")``) builds
both executables as CudaExecutables (kiln/runtime/cuda_executable.py: the training
pipeline of ``CUDA_PIPELINES``; the eval step ``EVAL_PASSES`` without ``layout``). The
code path is the same for both targets; the buffers are only touched through
``_read`` / ``_write`` / ``_copy`` below. On the device the weights, optimizer slots,
moving statistics, metric accumulators and ``rng.counter`` stay in device memory for
the whole ``fit``: ``pull`` downloads the updated weights and the optimizer state,
``push`` and the per-epoch metric resets upload (``set_param``), and the eval step
gets the train step's weights device-to-device (``CudaExecutable.copy_param_from``;
from the Variables, through the host, only for weights the train step does not hold).
"""
from __future__ import annotations

import numpy as np

from ..frontend import losses as _losses
from ..frontend import mathops as M
from ..frontend import metrics as _metrics
from ..frontend.lowering import lower
from ..frontend.naming import ir_name
from ..frontend.ops import _params as _param_tables
from ..ir.opdef import OpTypeError
from ..ir.types import BATCH, DType, TensorType
from ..passes.autodiff import gradients
from .executable import compile as _compile

#: passes of the eval step: no constant folding, the weights change between calls
EVAL_PASSES = ["simplify", "dce", "fusion", "memory"]
#: what ``Model.compile(target=...)`` accepts
TARGETS = ("cpu", "cuda")


def eval_passes(target: str = "cpu") -> list:
    """The eval step's passes for ``target``: on "cuda" without ``layout`` (packed GEMM
    panels are a CPU layout), as the CUDA pipelines."""
    return [p for p in EVAL_PASSES if target != "cuda" or p != "layout"]


# -- executable buffers, either target: a CPU Executable's ``params`` are its live buffers
# (numpy arrays written in place); a CudaExecutable's live on the device (``set_param``,
# ``copy_param_from``; its ``params`` lookups download read-only copies)

def _read(exe, name: str) -> np.ndarray:
    return exe.params[name]


def _write(exe, name: str, value) -> None:
    if getattr(exe, "target", "cpu") == "cuda":
        exe.set_param(name, value)
    else:
        np.copyto(exe.params[name], value)


def _copy(dst, src, name: str) -> None:
    """Parameter ``name`` of ``src`` into ``dst``: device-to-device when both are CUDA
    executables, else through the host."""
    if getattr(dst, "target", "cpu") == "cuda" and getattr(src, "target", "cpu") == "cuda":
        dst.copy_param_from(src, name)
    else:
        _write(dst, name, _read(src, name))


class TargetSpec:
    """One output's training data: y_true's per-sample shape and dtype."""

    def __init__(self, shape: tuple, dtype: DType):
        self.shape, self.dtype = tuple(shape), dtype

    def key(self):
        return (self.shape, self.dtype)


class OutputSpec:
    """One model output as compiled: its loss, loss weight and metrics."""

    def __init__(self, name, loss, loss_weight, metrics, weighted_metrics):
        self.name = name
        self.loss = loss
        self.loss_weight = loss_weight
        self.metrics = metrics
        self.weighted_metrics = weighted_metrics


def _loss_object(loss):
    if loss is None or isinstance(loss, _losses.Loss):
        return loss
    return _losses.LossFunctionWrapper(loss, name=_losses.serialize(loss))


def model_variables(g) -> dict:
    """{param name: Variable} of the layer weights a lowered graph uses."""
    table = _param_tables.get(g, {})
    return {v.name: var for var, v in table.values()}


class _Metrics:
    """Metric accumulators added to a graph: names, state params, result values."""

    def __init__(self, g):
        self.g = g
        self.names: list = []
        self.results: list = []
        self.state: dict = {}        # param name -> initial value

    def _params(self, label: str, specs: dict) -> dict:
        out = {}
        for k, init in specs.items():
            init = np.asarray(init, np.float32)
            p = self.g.add_param(self.g.unique_param_name(f"metrics.{ir_name(label)}.{k}"), init)
            self.state[p.name] = init.copy()
            out[k] = p
        return out

    def add(self, label, metric, y_true, y_pred, sample_weight):
        state = self._params(label, metric.state_specs())
        new = metric.update(state, y_true, y_pred, sample_weight)
        for k, p in state.items():
            self.g.add_update(p, M.cast(new[k], p.dtype))
        cur = {k: new[k] for k in state}
        self.names.append(label)
        self.results.append(M.cast(metric.result_value(cur), DType.f32))

    def add_mean(self, label, value, weight):
        m = _metrics.Mean()
        state = self._params(label, m.state_specs())
        new = {"total": M.add(state["total"], M.mul(value, weight)),
               "count": M.add(state["count"], weight)}
        for k, p in state.items():
            self.g.add_update(p, new[k])
        self.names.append(label)
        self.results.append(m.result_value(new))


class TrainStep:
    """The compiled train and eval steps of a model for one target layout. Each
    executable is built on first use (evaluating never compiles the training graph).
    ``target``: "cpu" or "cuda" (both executables; see the module docstring)."""

    def __init__(self, model, outputs: list, optimizer, targets: list, previous=None,
                 target: str = "cpu"):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
        self.target = target
        self.model = model
        self.outputs = outputs
        self.optimizer = optimizer
        self.targets = targets
        self.train_exe = None
        self.eval_exe = None
        self.names: list = []
        self.variables: dict = {}     # train graph: param name -> Variable
        self.updated: set = set()
        self.frozen: set = set()
        self._versions: dict = {}
        self._previous = previous
        self.dirty = False            # train buffers ahead of the Variables
        self.eval_stale = True        # eval buffers behind the current weights
        self.stale = False            # a baked-in (frozen) weight changed: rebuild

    def _ensure_train(self):
        if self.train_exe is not None:
            return
        self._build_train()
        prev = self._previous
        self._previous = None
        if prev is not None and prev.train_exe is not None:
            for name in ("rng.counter",):
                if name in self.train_exe.params and name in prev.train_exe.params:
                    _copy(self.train_exe, prev.train_exe, name)
        self.optimizer._live = self
        self.eval_stale = True

    # -- building ---------------------------------------------------------------------------
    def _add_targets(self, g):
        """Inputs after the model's: every output's ``y_true``, then every ``sample_weight``."""
        sfx = [""] if len(self.outputs) == 1 else [f".{ir_name(o.name)}" for o in self.outputs]
        ys = [g.add_input(f"y_true{s}", TensorType((BATCH,) + t.shape, t.dtype))
              for s, t in zip(sfx, self.targets)]
        sws = [g.add_input(f"sample_weight{s}", TensorType((BATCH,), DType.f32)) for s in sfx]
        return ys, sws

    def _losses_and_metrics(self, g, preds, ys, sws):
        """Append the loss and the metrics; returns (total loss, _Metrics)."""
        mets = _Metrics(g)
        per_output = []
        total = None
        for o, y, sw, p in zip(self.outputs, ys, sws, preds):
            if o.loss is None:
                per_output.append(None)
                continue
            try:
                value = o.loss(y, p, sw)
            except OpTypeError as e:
                raise ValueError(
                    f"the loss {getattr(o.loss, 'name', o.loss)!r} of output {o.name!r} does not "
                    f"fit: y_true has shape {_keras_shape(y)} and the model output has shape "
                    f"{_keras_shape(p)} ({e})") from None
            value = M.cast(value, DType.f32)
            if value.type.rank != 0:
                raise ValueError(f"the loss of output {o.name!r} must reduce to a scalar, got "
                                 f"{value.type} (reduction={getattr(o.loss, 'reduction', None)})")
            per_output.append(value)
            weighted = value if o.loss_weight is None else M.mul(value, np.float32(o.loss_weight))
            total = weighted if total is None else M.add(total, weighted)
        if total is None:
            raise ValueError("no output has a loss: compile the model with a loss")
        n = M.batch_size(preds[0])
        mets.add_mean("loss", total, n)
        many = len(self.outputs) > 1
        for o, y, sw, p in zip(self.outputs, ys, sws, preds):
            for m in o.metrics:
                try:
                    mets.add(f"{o.name}_{m.name}" if many else m.name, m, y, p, None)
                except OpTypeError as e:
                    raise ValueError(f"the metric {m.name!r} does not fit output {o.name!r} "
                                     f"(y_true {_keras_shape(y)}, output {_keras_shape(p)}): "
                                     f"{e}") from None
            for m in o.weighted_metrics:
                label = f"{o.name}_{m.name}" if many else m.name
                if label in mets.names:
                    label = f"{o.name}_weighted_{m.name}" if many else f"weighted_{m.name}"
                mets.add(label, m, y, p, sw)
        if many:
            for o, v in zip(self.outputs, per_output):
                if v is not None:
                    mets.add_mean(f"{o.name}_loss", v, n)
        return total, mets

    def _build_train(self):
        model = self.model
        g = lower(model, training=True)
        g.name = ir_name(g.name + "_train")
        variables = model_variables(g)
        preds = list(g.outputs)
        ys, sws = self._add_targets(g)
        lr = g.add_input("learning_rate", TensorType((), DType.f32))
        with g.building():
            total, mets = self._losses_and_metrics(g, preds, ys, sws)
            trainable = [v for v in model.trainable_weights if any(v is x for x in variables.values())]
            names = {id(var): name for name, var in variables.items()}
            params = [g.params[names[id(v)]] for v in trainable]
            if not params:
                raise ValueError(f'model "{model.name}" has no trainable weights: there is nothing '
                                 f"to train")
            loss_for_grad = total
            if self.optimizer.loss_scale_factor is not None:
                loss_for_grad = M.mul(total, np.float32(self.optimizer.loss_scale_factor))
            grads = gradients(g, loss_for_grad, params)
            self.opt_layout = self.optimizer.build_step(g, params, grads, trainable, lr)
        g.set_outputs(mets.results)
        self.names = list(mets.names)
        self.train_state = mets.state
        self.variables = variables
        self.updated = g.updated_params
        self.train_graph = g
        self.grads = {p.name: d for p, d in zip(params, grads) if d is not None}
        self.train_exe = self._compile_train(g)
        self.it_name = next(k for k, v in self.opt_layout.items() if v == ("iterations",))
        self.frozen = {name for name in variables if name not in self.train_exe.params}
        self._versions = {id(v): v.version for v in variables.values()}

    def _compile_train(self, g):
        """The train executable of the built graph (``self.grads``: param name -> its
        gradient value in ``g``). kiln/distributed cuts the graph here, at the gradients."""
        return _compile(g, passes="training", target=self.target)

    def _build_eval(self):
        g = lower(self.model, training=False)
        g.name = ir_name(g.name + "_eval")
        preds = list(g.outputs)
        ys, sws = self._add_targets(g)
        with g.building():
            _, mets = self._losses_and_metrics(g, preds, ys, sws)
        g.set_outputs(mets.results)
        self.eval_state = mets.state
        self.eval_variables = model_variables(g)
        self.eval_exe = _compile(g, passes=eval_passes(self.target), target=self.target)
        self.names = self.names or list(mets.names)
        self.eval_stale = True

    # -- weights between the model and the buffers ------------------------------------------
    def push(self):
        """Copy weights changed on the model side into the train buffers."""
        self.eval_stale = True if self.train_exe is None else self.eval_stale
        for name, var in self.variables.items():
            if self._versions.get(id(var)) == var.version:
                continue
            if name in self.frozen:
                self.stale = True
            else:
                _write(self.train_exe, name, var.value)
            self._versions[id(var)] = var.version
            self.eval_stale = True

    def pull(self):
        """Bring the model's Variables (and the optimizer's state) up to date."""
        if not self.dirty:
            return
        for name, var in self.variables.items():
            if name in self.updated and name in self.train_exe.params:
                var.assign(_read(self.train_exe, name))
                self._versions[id(var)] = var.version
        self.optimizer._absorb(self.opt_layout, self.train_exe.params)
        self.dirty = False

    def _sync_eval(self):
        """The current weights into the eval buffers: from the train buffers while they
        hold the weights (device-to-device on "cuda"), else from the Variables."""
        if self.eval_exe is None:
            self._build_eval()
        if not self.eval_stale:
            return
        train = self.train_exe
        for name, var in self.eval_variables.items():
            if name not in self.eval_exe.params:
                continue
            if train is not None and name not in self.frozen and name in train.params:
                _copy(self.eval_exe, train, name)
            else:
                _write(self.eval_exe, name, var.value)
        self.eval_stale = False

    # -- running ----------------------------------------------------------------------------
    def optimizer_iterations(self) -> int:
        return int(_read(self.train_exe, self.it_name))

    def set_optimizer_iterations(self, value: int):
        _write(self.train_exe, self.it_name, value)

    def reset_train_metrics(self):
        if self.train_exe is None:
            return                    # a fresh build starts from the initial state
        for name, init in self.train_state.items():
            _write(self.train_exe, name, init)

    def reset_eval_metrics(self):
        if self.eval_exe is not None:
            for name, init in self.eval_state.items():
                _write(self.eval_exe, name, init)

    def train_batch(self, xs, ys, sws) -> dict:
        self._ensure_train()
        lr = self.optimizer._learning_rate
        if lr.__class__ is not float:          # a schedule: evaluated at the step count
            lr = self.optimizer.learning_rate_at(self.optimizer_iterations())
        outs = self.train_exe(*xs, *ys, *sws, np.asarray(lr, np.float32))   # 0-d: the fast call path
        self.dirty = True
        self.eval_stale = True
        outs = outs if isinstance(outs, tuple) else (outs,)
        return {k: float(v) for k, v in zip(self.names, outs)}

    def eval_batch(self, xs, ys, sws) -> dict:
        self._sync_eval()
        outs = self.eval_exe(*xs, *ys, *sws)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return {k: float(v) for k, v in zip(self.names, outs)}


def _keras_shape(v) -> tuple:
    return tuple(None if isinstance(d, str) else d for d in v.type.shape)
