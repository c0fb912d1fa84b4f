"""``TrainingMixin``: Keras' compile / fit / evaluate / train_on_batch / test_on_batch.

Python slices batches and runs callbacks; each batch is ONE call of the compiled
training step (kiln/runtime/training.py, imported late: the frontend does not depend on
the runtime). That module's docstring says what the step holds as state, what it is fed
per step, and where the weights live during training.

``compile(..., target="cuda")`` runs all of it on the GPU (numba.cuda kernels, or numba's
CUDA simulator): the train and eval steps are CudaExecutables whose weights and
optimizer state stay on the device for the whole ``fit``, and ``predict`` / ``model(x)``
use a ``target="cuda"`` inference executable.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ...ir.types import DType
from .. import callbacks as _callbacks
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from .batches import (_ArraySource, _IterSource, _check_sparse_labels, _class_weights,
                      _is_batch_iterable, _split)

_NOT_COMPILED = ("You must call `compile()` before using the model for training: "
                 "model.compile(optimizer=..., loss=..., metrics=[...])")


def _is_sparse_ce(loss) -> bool:
    fn = getattr(loss, "fn", loss)
    return getattr(fn, "_fn", fn) is getattr(_losses.sparse_categorical_crossentropy, "_fn", None)


class TrainingMixin:
    """Mixed into ``Model``: everything about training a compiled model."""

    # -- compile ----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True, distribute=None, target="cpu"):
        """Configure training (Keras' signature; ``run_eagerly``, ``steps_per_execution``,
        ``jit_compile`` and ``auto_scale_loss`` are accepted and ignored: every step is
        compiled code). ``distribute``: a ``kiln.distributed.DataParallel`` to train
        data-parallel across MPI ranks (kiln/distributed).

        ``target``: where ``fit`` / ``evaluate`` / ``train_on_batch`` / ``test_on_batch``
        and ``predict`` run: ``"cpu"`` (default) or ``"cuda"`` (the GPU through numba.cuda;
        raises CudaUnavailable when there is no GPU and no simulator). On ``"cuda"`` the
        weights and optimizer slots stay on the device during training and are copied
        back to the model's Variables only when read (``get_weights``, ``predict``,
        saving, callbacks that read them) and at the end of every epoch and of ``fit``;
        ``set_weights`` is uploaded before the next step. ``predict`` compiles a
        ``target="cuda"`` inference executable (recompiled when the weights changed, as
        on the CPU). An op without a CUDA kernel is named in a NotImplementedError when
        the step is first built; nothing falls back to the CPU."""
        from ...runtime.training import TARGETS
        if not isinstance(target, str) or target not in TARGETS:
            raise ValueError(f"compile: unknown target {target!r}; expected one of "
                             f"{', '.join(repr(t) for t in TARGETS)}")
        if target == "cuda":
            if distribute is not None:
                raise ValueError("compile: target='cuda' and distribute=... cannot be combined "
                                 "(data-parallel training runs on the CPU)")
            from ...codegen.cuda.device import cuda_module
            cuda_module()                 # CudaUnavailable now, not at the first step
        self.optimizer = _optimizers.get(optimizer)
        self.__dict__["_distribute"] = distribute
        if isinstance(metrics, (str, _metrics.Metric)) or callable(metrics):
            raise ValueError(f"Expected `metrics` argument to be a list, tuple, or dict. "
                             f"Received instead: metrics={metrics} of type {type(metrics)}")
        self.loss = loss
        self._compile_args = dict(loss=loss, loss_weights=loss_weights, metrics=metrics,
                                  weighted_metrics=weighted_metrics)
        self._release_step()
        if self.__dict__.get("_target", "cpu") != target:
            self._exe = None              # the inference executable: recompiled for target
        self.__dict__["_target"] = target
        self.compiled = True
        self.stop_training = False

    @property
    def compiled(self) -> bool:
        return self.__dict__.get("_compiled", False)

    @compiled.setter
    def compiled(self, v):
        self.__dict__["_compiled"] = bool(v)

    def _release_step(self):
        step = self.__dict__.get("_train_step")
        if step is not None:
            step.pull()
            if step.optimizer._live is step:
                step.optimizer._live = None
            self.__dict__["_prev_step"] = step
        self.__dict__["_train_step"] = None

    # -- weights: keep the Variables current while a step holds them --------------------------
    @property
    def weights(self):
        step = self.__dict__.get("_train_step")
        if step is not None:
            step.pull()
        return super().weights

    variables = weights

    @property
    def metrics_names(self) -> list:
        step = self.__dict__.get("_train_step")
        return list(step.names) if step is not None else []

    def reset_metrics(self):
        step = self.__dict__.get("_train_step")
        if step is not None:
            step.reset_train_metrics()
            step.reset_eval_metrics()

    # -- data -------------------------------------------------------------------------------
    def _output_names(self, n: int) -> list:
        """Keras' output names: the keys of a dict of outputs (sorted, the flat order), else
        the names of the layers producing the outputs."""
        names = getattr(self, "output_names", None)
        if names and len(names) == n:
            return list(names)
        struct = self._output_structure() if hasattr(self, "_output_structure") else None
        if isinstance(struct, dict) and len(struct) == n:
            return sorted(struct)
        try:
            outs = list(self.outputs)
            names = [t._keras_history[0].name for t in outs]
            if len(names) == n and len(set(names)) == n:
                return names
        except (AttributeError, TypeError):
            pass
        if n == 1 and getattr(self, "layers", None):
            return [self.layers[-1].name]
        return [f"output_{i}" for i in range(n)]

    def _structure(self, data, names, what) -> list:
        """x / y / sample_weight (array, list or dict) -> a list in ``names`` order."""
        if isinstance(data, dict):
            missing = [n for n in names if n not in data]
            if missing:
                raise ValueError(f"{what}: the dict is missing key(s) {missing} (expected "
                                 f"{names}; got {list(data)})")
            return [np.asarray(data[n]) for n in names]
        if isinstance(data, (list, tuple)) and len(names) > 1:
            if len(data) != len(names):
                raise ValueError(f"{what}: expected {len(names)} arrays (one per "
                                 f"{'input' if what == 'x' else 'output'}: {names}), got "
                                 f"{len(data)}")
            return [np.asarray(a) for a in data]
        if isinstance(data, (list, tuple)) and len(data) == 1 and hasattr(data[0], "shape"):
            return [np.asarray(data[0])]
        return [np.asarray(data)]

    def _prepare_data(self, x, y, sample_weight, class_weight=None, training=True):
        """Standardize (x, y, sample_weight) to lists of arrays, checked and typed."""
        if x is None:
            raise ValueError("x must be given (numpy arrays, or a list/dict of them)")
        xs_t = [np.ascontiguousarray(a) for a in self._prepare_inputs(x)]
        for (name, shape, dt), a in zip(self._input_specs(), xs_t):
            if a.dtype.kind not in "biuf":
                raise ValueError(f"input '{name}': expected numeric data, got dtype {a.dtype}")
            if a.ndim != len(shape) or any(d is not None and d != n
                                           for d, n in zip(shape[1:], a.shape[1:])):
                raise ValueError(f"input '{name}': expected shape {tuple(shape)}, got {a.shape}")
        if y is None:
            raise ValueError("y (the targets) must be given to train or evaluate")
        n_out = len(self._outputs_spec())
        out_names = self._output_names(n_out)
        ys = self._structure(y, out_names, "y")
        if len(ys) != n_out:
            raise ValueError(f"y: the model has {n_out} output(s) ({out_names}), got {len(ys)} "
                             f"target array(s)")
        for a, nm in zip(ys, out_names):
            if a.dtype.kind not in "biuf":
                raise ValueError(f"y for output '{nm}': expected numeric data, got dtype "
                                 f"{a.dtype}")
            if a.ndim == 0:
                raise ValueError(f"y for output '{nm}': expected an array with a batch axis, "
                                 f"got a scalar")
        if sample_weight is not None and class_weight is not None:
            raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
        if sample_weight is not None:
            sws = self._structure(sample_weight, out_names, "sample_weight")
            if len(sws) == 1 and n_out > 1:
                sws = sws * n_out
            sws = [np.asarray(s, np.float32).reshape(len(s), -1)[:, 0]
                   if np.ndim(s) > 1 and np.size(s) == len(s) else np.asarray(s, np.float32)
                   for s in sws]
            for s in sws:
                if s.ndim != 1:
                    raise ValueError(f"sample_weight must have shape (samples,), got {s.shape}")
        else:
            sws = None
        if class_weight is not None:
            if n_out > 1:
                raise ValueError("`class_weight` is only supported for models with a single "
                                 "output.")
            sws = [_class_weights(ys[0], class_weight)]
        sizes = {"x": [len(a) for a in xs_t], "y": [len(a) for a in ys]}
        if sws is not None:
            sizes["sample_weight"] = [len(a) for a in sws]
        if len({n for v in sizes.values() for n in v}) != 1:
            msg = " ".join(f"'{k}' sizes: {', '.join(map(str, v))}" for k, v in sizes.items())
            raise ValueError(f"Data cardinality is ambiguous. Make sure all arrays contain the "
                             f"same number of samples. {msg}")
        if len(xs_t[0]) == 0:
            raise ValueError("the data holds no samples")
        outs = self._outputs_spec()
        ys_t = []
        for a, (name, pred_shape), o in zip(ys, outs, self._compiled_outputs(ys, outs)):
            if _is_sparse_ce(o.loss):
                a = _check_sparse_labels(a, name, pred_shape)
            else:
                a = np.ascontiguousarray(a, dtype=np.float32)
            ys_t.append(a)
        if sws is None:
            sws = [np.ones(len(xs_t[0]), np.float32) for _ in ys_t]
        return xs_t, ys_t, [np.ascontiguousarray(s, np.float32) for s in sws]

    def _outputs_spec(self) -> list:
        """(name, keras shape) per model output, by tracing."""
        cached = self.__dict__.get("_out_spec_cache")
        key = self._structure_version
        if cached is not None and cached[0] == key:
            return cached[1]
        from ...ir.graph import Graph
        from ...ir.types import TensorType
        from ..naming import ir_name
        from ..shapes import to_ir_shape, to_keras_shape
        g = Graph("outputs")
        ins = [g.add_input(ir_name(n), TensorType(to_ir_shape(s), d)) for n, s, d in self._input_specs()]
        with g.building():
            outs = self._trace(ins, training=False)
        names = self._output_names(len(outs))
        spec = [(nm, to_keras_shape(o.shape)) for nm, o in zip(names, outs)]
        self.__dict__["_out_spec_cache"] = (key, spec)
        return spec

    def _compiled_outputs(self, ys, outs) -> list:
        """The OutputSpecs (loss, weight, metrics per output), resolved against the data."""
        from ...runtime.training import OutputSpec, _loss_object
        args = self._compile_args
        names = [n for n, _ in outs]
        losses = _per_output(args["loss"], names, "loss")
        if all(v is None for v in losses):
            raise ValueError("the model was compiled without a loss: compile(loss=...) to train "
                             "or evaluate it")
        weights = _per_output(args["loss_weights"], names, "loss_weights", scalar_ok=True)
        mets = _per_output_lists(args["metrics"], names, "metrics")
        wmets = _per_output_lists(args["weighted_metrics"], names, "weighted_metrics")
        specs = []
        for k, (name, shape) in enumerate(outs):
            loss = _loss_object(_losses.get(losses[k])) if losses[k] is not None else None
            yshape = ys[k].shape if ys is not None else (None,) + tuple(shape[1:])

            def resolve(m):
                if isinstance(m, str) and m.lower() in ("accuracy", "acc"):
                    return _metrics.resolve_accuracy(m, yshape, shape)
                return _metrics.get(m)
            specs.append(OutputSpec(name, loss, weights[k], [resolve(m) for m in mets[k]],
                                    [resolve(m) for m in wmets[k]]))
        return specs

    def _get_step(self, xs, ys):
        """The compiled training step for data like (xs, ys), built on first use and
        rebuilt when the model's structure, trainability or target layout changed."""
        if not self.compiled:
            raise RuntimeError(_NOT_COMPILED)
        from ...runtime.training import TargetSpec, TrainStep
        targets = [TargetSpec(a.shape[1:], DType.from_numpy(a.dtype)) for a in ys]
        key = (self._structure_version, tuple(v.trainable for v in _all_weights(self)),
               tuple(t.key() for t in targets), tuple(a.shape[1:] for a in xs))
        step = self.__dict__.get("_train_step")
        if step is not None:
            step.push()
            if self.__dict__.get("_step_key") == key and not step.stale:
                return step
            self._release_step()
        outs = self._outputs_spec()
        specs = self._compiled_outputs(ys, outs)
        strategy = self.__dict__.get("_distribute")
        prev = self.__dict__.get("_prev_step")
        if strategy is None:
            step = TrainStep(self, specs, self.optimizer, targets, previous=prev,
                             target=self.__dict__.get("_target", "cpu"))
        else:
            step = strategy.train_step(self, specs, self.optimizer, targets, previous=prev)
        self.__dict__["_train_step"] = step
        self.__dict__["_step_key"] = key
        self.__dict__["_prev_step"] = None
        return step

    # -- fit --------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs`` epochs (Keras semantics); returns a ``History``. ``x`` is
        arrays (``y`` the targets), or an iterable of ``(x, y)`` / ``(x, y, sample_weight)``
        batches (a generator, a dataset)."""
        if not self.compiled:
            raise RuntimeError(_NOT_COMPILED)
        batch_size = _check_batch_size(batch_size, "fit")
        verbose = 1 if verbose == "auto" else int(verbose)
        strategy = self.__dict__.get("_distribute")
        if strategy is not None:     # progress bar and file-writing callbacks on rank 0 only
            verbose, callbacks = strategy.fit_setup(verbose, callbacks)
        if _is_batch_iterable(x):
            if y is not None or sample_weight is not None or validation_split:
                raise ValueError("when x is an iterable of batches it yields (x, y) or (x, y, "
                                 "sample_weight); y, sample_weight and validation_split must "
                                 "not be given")
            train = _IterSource(self, x, steps_per_epoch, class_weight)
        else:
            if validation_data is None and validation_split:
                if not 0 < validation_split < 1:
                    raise ValueError(f"validation_split must be in (0, 1), got "
                                     f"{validation_split}")
                x, y, sample_weight, validation_data = _split(x, y, sample_weight,
                                                              validation_split)
            train = _ArraySource(*self._prepare_data(x, y, sample_weight, class_weight),
                                 batch_size, shuffle, steps_per_epoch)
        val = None
        if validation_data is not None:
            val = self._source(validation_data, validation_batch_size or batch_size,
                               validation_steps, tuple_ok=True)
        xs, ys, _ = train.first()
        step = self._get_step(xs, ys)
        cbs = _callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                      model=self, verbose=verbose, epochs=epochs,
                                      steps=train.steps)
        has_nan_guard = any(isinstance(c, _callbacks.TerminateOnNaN) for c in cbs.callbacks)
        self.stop_training = False
        cbs.on_train_begin()
        epoch_logs = {}
        warned = False
        for epoch in range(initial_epoch, epochs):
            step.reset_train_metrics()
            cbs.on_epoch_begin(epoch)
            logs = {}
            for i, (bx, by, bw) in enumerate(train.epoch()):
                cbs.on_train_batch_begin(i)
                logs = step.train_batch(bx, by, bw)
                cbs.on_train_batch_end(i, logs)
                if self.stop_training:
                    break
            if not logs:
                warnings.warn("fit: the training data ran out; stopping (give steps_per_epoch "
                              "with an iterator that yields enough batches, or a re-iterable)")
                break
            epoch_logs = dict(logs)
            if val is not None and _should_validate(epoch, validation_freq):
                vl = self._run_eval(step, val, cbs)
                epoch_logs.update({"val_" + k: v for k, v in vl.items()})
            step.pull()
            if not has_nan_guard and not warned and not math.isfinite(epoch_logs.get("loss", 0.0)):
                warnings.warn(f"fit: the loss became {epoch_logs['loss']} in epoch {epoch + 1}; "
                              f"the weights are no longer meaningful. Lower the learning rate, "
                              f"check the data for NaN/inf, or pass "
                              f"callbacks=[kiln.callbacks.TerminateOnNaN()] to stop at once.",
                              RuntimeWarning, stacklevel=2)
                warned = True
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        step.pull()
        cbs.on_train_end(logs=epoch_logs)
        self.history = cbs.history
        return self.history

    def _source(self, data, batch_size, steps, tuple_ok=False, y=None, sample_weight=None):
        """Batches for evaluation: an iterable of batches, a (x, y[, sw]) tuple, or arrays."""
        if _is_batch_iterable(data):
            return _IterSource(self, data, steps)
        if tuple_ok:
            vd = tuple(data)
            if len(vd) not in (2, 3):
                raise ValueError(f"validation_data must be (x_val, y_val) or (x_val, y_val, "
                                 f"val_sample_weight), got a tuple of {len(vd)}")
            data, y, sample_weight = vd[0], vd[1], (vd[2] if len(vd) == 3 else None)
        xs, ys, sws = self._prepare_data(data, y, sample_weight)
        if steps is not None:            # never past the end of the data
            steps = min(int(steps), math.ceil(len(xs[0]) / batch_size))
        return _ArraySource(xs, ys, sws, batch_size, False, steps)

    # -- evaluate ---------------------------------------------------------------------------
    def _run_eval(self, step, source, cbs) -> dict:
        step.push()
        step.reset_eval_metrics()
        cbs.on_test_begin()
        logs = {}
        for i, (bx, by, bw) in enumerate(source.epoch()):
            cbs.on_test_batch_begin(i)
            logs = step.eval_batch(bx, by, bw)
            cbs.on_test_batch_end(i, logs)
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """The loss and metrics over (x, y) (or an iterable of batches): ``[loss, *metrics]``
        (a float when there is only the loss) or, with ``return_dict``, a dict."""
        if not self.compiled:
            raise RuntimeError(_NOT_COMPILED)
        batch_size = _check_batch_size(batch_size, "evaluate")
        verbose = 1 if verbose == "auto" else int(verbose)
        strategy = self.__dict__.get("_distribute")
        if strategy is not None:
            verbose, callbacks = strategy.fit_setup(verbose, callbacks)
        source = self._source(x, batch_size, steps, y=y, sample_weight=sample_weight)
        xs, ys, _ = source.first()
        step = self._get_step(xs, ys)
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=1, steps=source.steps)
        logs = self._run_eval(step, source, cbs)
        return dict(logs) if return_dict else _flat(logs)

    # -- single batches ---------------------------------------------------------------------
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on one batch; metrics accumulate across calls until
        ``reset_metrics()`` (as Keras)."""
        if not self.compiled:
            raise RuntimeError(_NOT_COMPILED)
        xs, ys, sws = self._prepare_data(x, y, sample_weight, class_weight)
        step = self._get_step(xs, ys)
        logs = step.train_batch(xs, ys, sws)
        return dict(logs) if return_dict else _flat(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        if not self.compiled:
            raise RuntimeError(_NOT_COMPILED)
        xs, ys, sws = self._prepare_data(x, y, sample_weight)
        step = self._get_step(xs, ys)
        step.push()
        logs = step.eval_batch(xs, ys, sws)
        return dict(logs) if return_dict else _flat(logs)


# -- helpers ----------------------------------------------------------------------------------

def _all_weights(model):
    """The model's Variables without syncing them (Layer.weights)."""
    from ..layers.base import Layer
    return Layer.weights.fget(model)


def _flat(logs: dict):
    vals = list(logs.values())
    return vals[0] if len(vals) == 1 else vals


def _check_batch_size(bs, what) -> int:
    if bs is None:
        return 32
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ValueError(f"{what}: batch_size must be a positive integer, got {bs!r}")
    return int(bs)


def _should_validate(epoch, freq) -> bool:
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq


def _per_output(value, names, what, scalar_ok=False) -> list:
    n = len(names)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"In the dict argument `{what}`, key(s) {unknown} do not correspond "
                             f"to any model output ({names}).")
        return [value.get(nm) for nm in names]
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"`{what}` has {len(value)} entries but the model has {n} "
                             f"output(s) ({names})")
        return list(value)
    return [value] * n


def _per_output_lists(value, names, what) -> list:
    n = len(names)
    if value is None:
        return [[] for _ in names]
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"In the dict argument `{what}`, key(s) {unknown} do not correspond "
                             f"to any model output ({names}).")
        return [_as_list(value.get(nm)) for nm in names]
    value = list(value)
    if n == 1:
        return [[m for m in value if m is not None]]
    if len(value) != n:
        raise ValueError(f"For a model with multiple outputs, when providing the `{what}` "
                         f"argument as a list, it should have as many entries as the model has "
                         f"outputs. Received: {what}={value} of length {len(value)} whereas the "
                         f"model has {n} outputs.")
    return [_as_list(v) for v in value]


def _as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]
