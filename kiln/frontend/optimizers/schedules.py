"""``kiln.optimizers.schedules``: learning-rate schedules (Keras 3 formulas).

A schedule maps the optimizer's step count (``iterations``, before the step) to the
learning rate. kiln evaluates it on the host once per training step, in float32 as
Keras does, and feeds the value to the compiled step as its ``learning_rate`` input:
the graph stays the same whatever the schedule (any callable works, as in Keras).
"""
from __future__ import annotations

import math

import numpy as np

f32 = np.float32


class LearningRateSchedule:
    """Base class: implement ``__call__(step) -> learning rate``."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  f"`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  f"`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _positive(name, v):
    if v <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={v}")


class _StaircaseDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: their arguments and the progress
    ``step / decay_steps`` (floored with ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name=None):
        _positive("decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, decay_rate, staircase
        self.name = name or type(self).__name__

    def _progress(self, step):
        p = f32(step) / f32(self.decay_steps)
        return np.floor(p) if self.staircase else p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StaircaseDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent floored
    with ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        return f32(self.initial_learning_rate) * np.power(f32(self.decay_rate), f32(self._progress(step)))


class InverseTimeDecay(_StaircaseDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored with
    ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        return f32(self.initial_learning_rate) / (f32(1) + f32(self.decay_rate) * f32(self._progress(step)))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"The length of boundaries should be 1 less than the length of "
                             f"values. Received: boundaries={boundaries} of length "
                             f"{len(boundaries)}, and values={values} of length {len(values)}.")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return f32(v)
        return f32(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` (or, after an optional linear warmup to
    ``warmup_target`` over ``warmup_steps``, from ``warmup_target``) to ``alpha`` times it
    over ``decay_steps``."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        _positive("decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps, self.alpha, self.name = \
            initial_learning_rate, decay_steps, alpha, name
        self.warmup_target, self.warmup_steps = warmup_target, warmup_steps

    def _decay(self, step, decay_from):
        frac = f32(step) / f32(self.decay_steps)
        cos = f32(0.5) * (f32(1) + np.cos(f32(math.pi) * frac))
        return f32(decay_from) * ((f32(1) - f32(self.alpha)) * cos + f32(self.alpha))

    def __call__(self, step):
        step = f32(step)
        if self.warmup_target is None:
            return self._decay(min(step, f32(self.decay_steps)), self.initial_learning_rate)
        ws = f32(self.warmup_steps)
        step = min(step, f32(self.decay_steps) + ws)
        if step < ws:
            return (f32(self.warmup_target) - f32(self.initial_learning_rate)) * (step / ws) \
                + f32(self.initial_learning_rate)
        return self._decay(step - ws, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``
    (``cycle``: decay_steps grows to the first multiple above ``step``)."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        _positive("decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.end_learning_rate, self.power, self.cycle, self.name = \
            end_learning_rate, power, cycle, name

    def __call__(self, step):
        step, ds = f32(step), f32(self.decay_steps)
        if self.cycle:
            ds = ds * (f32(1) if step == 0 else f32(np.ceil(step / ds)))
        else:
            step = min(step, ds)
        p = step / ds
        return (f32(self.initial_learning_rate) - f32(self.end_learning_rate)) * \
            np.power(f32(1) - p, f32(self.power)) + f32(self.end_learning_rate)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power,
                "cycle": self.cycle, "name": self.name}


__all__ = ["LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay",
           "PiecewiseConstantDecay", "CosineDecay", "PolynomialDecay"]
