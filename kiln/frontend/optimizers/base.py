"""The ``Optimizer`` base: Keras 3's common arguments and update pipeline, as IR.

``build_step(g, params, grads, variables, lr)`` appends to a graph, for every trainable
parameter with a gradient, exactly what Keras' ``BaseOptimizer.apply`` does:

1. gradients divided by ``loss_scale_factor`` (when set);
2. clipping: ``clipnorm`` (each gradient to that L2 norm), or ``global_clipnorm`` (all
   gradients by their joint norm), or ``clipvalue`` (elementwise) -- one at most;
3. weight decay ``var -= var * weight_decay * lr`` (when set; AdamW's default);
4. the optimizer's ``update_step`` on the variable and its slots (m, v, ...);
5. ``iterations += 1``.

Every new value is a *state update* of the graph (``%param <- value``): the variable's
parameter, its slots (parameters named ``<optimizer>.<slot>.<param>``) and
``<optimizer>.iterations`` (i64). The learning rate is the f32 scalar ``lr`` given by the
caller (the compiled step's ``learning_rate`` input, fed per step from the schedule).
"""
from __future__ import annotations

import warnings

import numpy as np

from ...ir.graph import Value
from ...ir.types import DType
from .. import mathops as M
from ..naming import ir_name, uniquify
from ..variables import Variable
from . import schedules as _schedules


class Optimizer:
    #: per-variable slots: (name, initial value as a float, or None for zeros)
    _slot_names: tuple = ()
    #: optimizer-wide f32 scalars carried as state: {name: initial value}
    _globals: dict = {}

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if "lr" in kwargs:       # legacy Keras 2 alias, still accepted as in Keras 2 programs
            lr = kwargs.pop("lr")
            if learning_rate is not None and learning_rate != type(self).__init__.__defaults__[0]:
                raise ValueError("pass only one of `learning_rate` and its legacy alias `lr`")
            learning_rate = lr
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be "
                             f"set. Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        if use_ema:
            raise NotImplementedError("use_ema=True (weight moving averages) is not supported yet")
        if gradient_accumulation_steps:
            raise NotImplementedError("gradient_accumulation_steps is not supported yet")
        self.name = name or uniquify(type(self).__name__.lower())
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_momentum = use_ema, ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._check_lr(learning_rate)
        self._learning_rate = learning_rate if callable(learning_rate) else float(learning_rate)
        self._iterations = 0
        self._slot_store: dict = {}      # (id(variable), slot) -> (variable, np.ndarray)
        self._global_store: dict = {}
        self._exclude_ids: set = set()
        self._exclude_names: tuple = ()
        self._live = None               # a compiled training step holding the state

    @staticmethod
    def _check_lr(lr):
        if isinstance(lr, _schedules.LearningRateSchedule) or callable(lr):
            return
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
            raise ValueError(f"Argument `learning_rate` should be float, or an instance of "
                             f"LearningRateSchedule, or a callable (that takes in the current "
                             f"iteration value and returns the corresponding learning rate "
                             f"value). Received instead: learning_rate={lr!r}")

    # -- Keras surface ----------------------------------------------------------------------
    @property
    def iterations(self) -> int:
        if self._live is not None:
            return self._live.optimizer_iterations()
        return self._iterations

    @iterations.setter
    def iterations(self, value):
        if self._live is not None:
            self._live.set_optimizer_iterations(int(value))
        self._iterations = int(value)

    def learning_rate_at(self, step) -> np.float32:
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            return np.float32(lr(step))
        if callable(lr):
            return np.float32(lr())
        return np.float32(lr)

    @property
    def learning_rate(self):
        """The current learning rate (a schedule evaluated at ``iterations``)."""
        return self.learning_rate_at(self.iterations)

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(self._learning_rate, _schedules.LearningRateSchedule) and not (
                isinstance(value, _schedules.LearningRateSchedule) or callable(value)):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as "
                            "its `learning_rate` constructor argument, hence its learning rate is "
                            "not settable. If you need the learning rate to be settable, you "
                            "should instantiate the optimizer with a float `learning_rate` "
                            "argument.")
        self._check_lr(value)
        self._learning_rate = value if callable(value) else float(value)

    lr = learning_rate

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        self._exclude_ids = {id(v) for v in (var_list or [])}
        self._exclude_names = tuple(var_names or ())

    def _use_weight_decay(self, variable) -> bool:
        if self.weight_decay is None or id(variable) in self._exclude_ids:
            return False
        name = getattr(variable, "name", "")
        return not any(s in name for s in self._exclude_names)

    @property
    def variables(self) -> list:
        """``[iterations, *slots]`` as numpy arrays (the live values while training)."""
        if self._live is not None:
            self._live.pull()
        out = [np.array(self._iterations, np.int64)]
        out += [np.array(v) for v in self._global_store.values()]
        out += [a.copy() for _, a in self._slot_store.values()]
        return out

    def get_config(self):
        lr = self._learning_rate
        return {"name": self.name,
                "learning_rate": lr.get_config() if hasattr(lr, "get_config") and callable(lr)
                and not isinstance(lr, (int, float)) else lr,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

    # -- what subclasses define -------------------------------------------------------------
    def slot_init(self, slot: str) -> float:
        return 0.0

    def pre_step(self, ctx) -> None:
        """Optimizer-wide work before the per-variable updates (Nadam's u_product)."""

    def update_step(self, ctx, grad: Value, var: Value, slots: dict) -> tuple:
        """Return (new variable value, {slot: new value})."""
        raise NotImplementedError

    # -- building the update into a graph ----------------------------------------------------
    def state_prefix(self) -> str:
        return ir_name(self.name)

    def build_step(self, g, params: list, grads: list, variables: list, lr: Value) -> dict:
        """Append the update of every (param, grad) to ``g`` (inside ``g.building()``) as state
        updates. Returns the state layout ``{param name: ("slot", variable, slot) |
        ("iterations",) | ("global", name)}`` of the parameters it added."""
        prefix = self.state_prefix()
        layout: dict = {}
        it = g.add_param(g.unique_param_name(f"{prefix}.iterations"),
                         np.array(self._iterations, np.int64))
        layout[it.name] = ("iterations",)
        ctx = _StepContext(g, lr, it)
        for name, init in self._globals.items():
            p = g.add_param(g.unique_param_name(f"{prefix}.{name}"),
                            np.array(self._global_store.get(name, init), np.float32))
            layout[p.name] = ("global", name)
            ctx.globals[name] = p
        live = [(p, gr, v) for p, gr, v in zip(params, grads, variables) if gr is not None]
        missing = [v.path for p, gr, v in zip(params, grads, variables) if gr is None]
        if missing:
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the "
                          f"loss. If using `model.compile()`, did you forget to provide a `loss` "
                          f"argument?")
        if not live:
            raise ValueError("No gradients provided for any variable.")
        gs = [gr for _, gr, _ in live]
        if self.loss_scale_factor is not None:
            gs = [M.div(gr, np.float32(self.loss_scale_factor)) for gr in gs]
        gs = self._clip(gs)
        self.pre_step(ctx)
        for (p, _, var), gr in zip(live, gs):
            cur = p
            if self._use_weight_decay(var):
                cur = M.sub(cur, M.mul(M.mul(cur, np.float32(self.weight_decay)), lr))
            slots = {}
            for s in self._slot_names:
                init = self._slot_value(var, s, p)
                sp = g.add_param(g.unique_param_name(f"{prefix}.{s}.{p.name}"), init)
                layout[sp.name] = ("slot", var, s)
                slots[s] = sp
            new_var, new_slots = self.update_step(ctx, gr, cur, slots)
            g.add_update(p, new_var)
            for s, v in new_slots.items():
                g.add_update(slots[s], v)
        for name, v in ctx.new_globals.items():
            g.add_update(ctx.globals[name], v)
        g.add_update(it, M.add(it, g.constant(1, DType.i64)))
        return layout

    def _slot_value(self, var, slot, p) -> np.ndarray:
        hit = self._slot_store.get((id(var), slot))
        if hit is not None and hit[0] is var and hit[1].shape == tuple(p.type.shape):
            return hit[1].copy()
        return np.full(p.type.shape, self.slot_init(slot), dtype=p.type.dtype.np)

    def _clip(self, gs: list) -> list:
        if self.clipnorm and self.clipnorm > 0:
            c = np.float32(self.clipnorm)
            out = []
            for gr in gs:
                l2sum = M.sum_(M.square(gr), keepdims=True)
                pred = M.greater(l2sum, 0.0)
                safe = M.where(pred, l2sum, 1.0)
                l2norm = M.where(pred, M.sqrt(safe), l2sum)
                out.append(M.div(M.mul(gr, c), M.maximum(l2norm, c)))
            return out
        if self.global_clipnorm and self.global_clipnorm > 0:
            c = np.float32(self.global_clipnorm)
            sq = [M.sum_(M.square(gr)) for gr in gs]
            total = sq[0]
            for s in sq[1:]:
                total = M.add(total, s)
            norm = M.sqrt(total)
            scale = M.mul(c, M.minimum(M.div(1.0, norm), np.float32(1.0) / c))
            scale = M.add(scale, M.sub(norm, norm))   # NaN/inf norms make the scale NaN (Keras)
            return [M.mul(gr, scale) for gr in gs]
        if self.clipvalue and self.clipvalue > 0:
            v = np.float32(self.clipvalue)
            return [M.clip(gr, -v, v) for gr in gs]
        return gs

    # -- eager use (custom training loops on Variables) --------------------------------------
    def apply_gradients(self, grads_and_vars):
        grads, variables = zip(*grads_and_vars)
        self.apply(list(grads), list(variables))
        return self._iterations

    def apply(self, grads, trainable_variables):
        """Update kiln ``Variable``\\ s from numpy gradients (one interpreted step)."""
        grads, variables = list(grads), list(trainable_variables)
        if len(grads) != len(variables):
            raise ValueError(f"got {len(grads)} gradients for {len(variables)} variables")
        for v in variables:
            if not isinstance(v, Variable):
                raise TypeError(f"apply expects kiln Variables, got {type(v).__name__}")
            if v.dtype != "float32":
                raise TypeError(f"optimizers update float32 variables; {v.path} is {v.dtype}")
        lr = self.learning_rate_at(self._iterations)
        arrays = [None if gr is None else np.asarray(gr, np.float32) for gr in grads]
        from ...ir.graph import Graph
        from ...ir.interpreter import interpret
        from ...ir.types import TensorType
        g = Graph("apply")
        ins = []
        feed = []
        for i, a in enumerate(arrays):
            if a is None:
                ins.append(None)
            else:
                ins.append(g.add_input(f"g{i}", TensorType(a.shape, DType.f32)))
                feed.append(a)
        ps = [g.add_param(f"v{i}", np.asarray(v.value)) for i, v in enumerate(variables)]
        with g.building():
            layout = self.build_step(g, ps, ins, variables, g.constant(lr, DType.f32))
        g.set_outputs([])
        _, new = interpret(g, *feed, return_updates=True)
        for i, v in enumerate(variables):
            if f"v{i}" in new:
                v.assign(new[f"v{i}"])
        self._absorb(layout, new)
        return self._iterations

    def _absorb(self, layout: dict, values: dict):
        """Keep the state values of a finished step (by the layout ``build_step`` gave)."""
        for name, what in layout.items():
            if name not in values:
                continue
            val = np.array(values[name], copy=True)
            if what[0] == "iterations":
                self._iterations = int(val)
            elif what[0] == "global":
                self._global_store[what[1]] = float(val)
            else:
                self._slot_store[(id(what[1]), what[2])] = (what[1], val)


class _StepContext:
    """What ``update_step`` sees: the graph, the learning rate, the step count."""

    def __init__(self, g, lr, iterations):
        self.g = g
        self.lr = lr
        self.iterations = iterations
        self.globals: dict = {}
        self.new_globals: dict = {}
        self._steps: dict = {}

    def local_step(self, offset: int = 1) -> Value:
        """``float(iterations + offset)`` (Keras' ``local_step`` is iterations + 1)."""
        if offset not in self._steps:
            it = M.add(self.iterations, self.g.constant(offset, DType.i64))
            self._steps[offset] = M.cast(it, DType.f32)
        return self._steps[offset]
