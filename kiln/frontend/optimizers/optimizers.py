"""The optimizers: Keras 3's ``update_step`` equations, line for line, as IR.

``t`` below is ``iterations + 1`` as f32 (Keras' ``local_step``); ``lr`` the step's
learning rate. Constants are f32 as in Keras (hyper-parameters cast to the variable's
dtype).
"""
from __future__ import annotations

import numpy as np

from .. import mathops as M
from .base import Optimizer

f32 = np.float32


class SGD(Optimizer):
    """``momentum == 0``: ``var -= lr * g``. Else ``m = momentum * m - lr * g`` and
    ``var += m``, or with ``nesterov``: ``var += momentum * m - lr * g`` (new m)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="SGD", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        if not isinstance(momentum, (int, float)) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum, self.nesterov = momentum, nesterov
        self._slot_names = ("momentum",) if momentum != 0 else ()

    def update_step(self, ctx, g, var, slots):
        if "momentum" not in slots:
            return M.sub(var, M.mul(g, ctx.lr)), {}
        mom = f32(self.momentum)
        m = M.sub(M.mul(slots["momentum"], mom), M.mul(g, ctx.lr))
        if self.nesterov:
            return M.add(var, M.sub(M.mul(m, mom), M.mul(g, ctx.lr))), {"momentum": m}
        return M.add(var, m), {"momentum": m}

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """``alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)``; ``m += (g - m)(1 - b1)``;
    ``v += (g^2 - v)(1 - b2)``; (amsgrad: ``v_hat = max(v_hat, v)``, used as v);
    ``var -= m * alpha / (sqrt(v) + epsilon)`` -- epsilon added to the un-corrected
    sqrt(v), as Keras (not PyTorch)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        self._slot_names = ("momentum", "velocity") + (("velocity_hat",) if amsgrad else ())

    def update_step(self, ctx, g, var, slots):
        t = ctx.local_step()
        b1, b2 = f32(self.beta_1), f32(self.beta_2)
        b1p = M.power(M.const(b1), t)
        b2p = M.power(M.const(b2), t)
        alpha = M.div(M.mul(ctx.lr, M.sqrt(M.sub(1.0, b2p))), M.sub(1.0, b1p))
        m = M.add(slots["momentum"], M.mul(M.sub(g, slots["momentum"]), f32(1) - b1))
        v = M.add(slots["velocity"], M.mul(M.sub(M.square(g), slots["velocity"]), f32(1) - b2))
        new = {"momentum": m, "velocity": v}
        if self.amsgrad:
            v = M.maximum(slots["velocity_hat"], v)
            new["velocity_hat"] = v
        step = M.div(M.mul(m, alpha), M.add(M.sqrt(v), f32(self.epsilon)))
        return M.sub(var, step), new

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004): ``var -= var * wd * lr`` first."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name="adamw",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")


class RMSprop(Optimizer):
    """``v = rho v + (1 - rho) g^2``; centered: ``a = rho a + (1 - rho) g`` and
    ``denominator = v - a^2 + eps`` (else ``v + eps``); ``inc = lr g / sqrt(denominator)``;
    momentum: ``mom = momentum * mom + inc``, ``var -= mom``; else ``var -= inc``."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name="rmsprop",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        self._slot_names = ("velocity",) + (("momentum",) if momentum > 0 else ()) + \
            (("average_gradient",) if centered else ())

    def update_step(self, ctx, g, var, slots):
        rho = f32(self.rho)
        v = M.add(M.mul(rho, slots["velocity"]), M.mul(f32(1) - rho, M.square(g)))
        new = {"velocity": v}
        if self.centered:
            a = M.add(M.mul(rho, slots["average_gradient"]), M.mul(f32(1) - rho, g))
            new["average_gradient"] = a
            den = M.add(M.sub(v, M.square(a)), f32(self.epsilon))
        else:
            den = M.add(v, f32(self.epsilon))
        inc = M.div(M.mul(ctx.lr, g), M.sqrt(den))
        if self.momentum > 0:
            mom = M.add(M.mul(f32(self.momentum), slots["momentum"]), inc)
            new["momentum"] = mom
            return M.sub(var, mom), new
        return M.sub(var, inc), new

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """``acc += g^2`` (from ``initial_accumulator_value``); ``var -= lr g / sqrt(acc + eps)``."""
    _slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name="adagrad",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def slot_init(self, slot):
        return self.initial_accumulator_value

    def update_step(self, ctx, g, var, slots):
        acc = M.add(slots["accumulator"], M.square(g))
        step = M.div(M.mul(ctx.lr, g), M.sqrt(M.add(acc, f32(self.epsilon))))
        return M.sub(var, step), {"accumulator": acc}

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """``ag = rho ag + (1 - rho) g^2``; ``d = -sqrt(ad + eps) g / sqrt(ag + eps)``;
    ``ad = rho ad + (1 - rho) d^2``; ``var += lr d``."""
    _slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="adadelta", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.rho, self.epsilon = rho, epsilon

    def update_step(self, ctx, g, var, slots):
        rho, eps = f32(self.rho), f32(self.epsilon)

        def rms(x):
            return M.sqrt(M.add(x, eps))
        ag = M.add(M.mul(rho, slots["accumulated_grad"]), M.mul(f32(1) - rho, M.square(g)))
        d = M.neg(M.div(M.mul(rms(slots["accumulated_delta_var"]), g), rms(ag)))
        ad = M.add(M.mul(rho, slots["accumulated_delta_var"]), M.mul(f32(1) - rho, M.square(d)))
        return M.add(var, M.mul(ctx.lr, d)), {"accumulated_grad": ag, "accumulated_delta_var": ad}

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adamax(Optimizer):
    """``m += (g - m)(1 - b1)``; ``u = max(b2 u, |g|)``;
    ``var -= lr m / ((1 - b1^t)(u + eps))``."""
    _slot_names = ("momentum", "norm")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name="adamax",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def update_step(self, ctx, g, var, slots):
        b1 = f32(self.beta_1)
        b1p = M.power(M.const(b1), ctx.local_step())
        m = M.add(slots["momentum"], M.mul(M.sub(g, slots["momentum"]), f32(1) - b1))
        u = M.maximum(M.mul(f32(self.beta_2), slots["norm"]), M.abs_(g))
        step = M.div(M.mul(ctx.lr, m), M.mul(M.sub(1.0, b1p), M.add(u, f32(self.epsilon))))
        return M.sub(var, step), {"momentum": m, "norm": u}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat), Keras' form: with ``u_t = b1 (1 - 0.5 *
    0.96^t)``, ``u_t1 = b1 (1 - 0.5 * 0.96^(t+1))`` and the running product
    ``u_product *= u_t`` (updated before the variables):
    ``m_hat = u_t1 m / (1 - u_product u_t1) + (1 - u_t) g / (1 - u_product)``,
    ``v_hat = v / (1 - b2^t)``, ``var -= lr m_hat / (sqrt(v_hat) + eps)``."""
    _slot_names = ("momentum", "velocity")
    _globals = {"u_product": 1.0}

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name="nadam",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def _u(self, step):
        return M.mul(f32(self.beta_1), M.sub(1.0, M.mul(0.5, M.power(M.const(f32(0.96)), step))))

    def pre_step(self, ctx):
        ctx.new_globals["u_product"] = M.mul(ctx.globals["u_product"], self._u(ctx.local_step()))

    def update_step(self, ctx, g, var, slots):
        t = ctx.local_step()
        u_t, u_t1 = self._u(t), self._u(ctx.local_step(2))
        u_prod = ctx.new_globals["u_product"]
        u_prod_t1 = M.mul(u_prod, u_t1)
        b1, b2 = f32(self.beta_1), f32(self.beta_2)
        b2p = M.power(M.const(b2), t)
        m = M.add(slots["momentum"], M.mul(M.sub(g, slots["momentum"]), f32(1) - b1))
        v = M.add(slots["velocity"], M.mul(M.sub(M.square(g), slots["velocity"]), f32(1) - b2))
        m_hat = M.add(M.div(M.mul(u_t1, m), M.sub(1.0, u_prod_t1)),
                      M.div(M.mul(M.sub(1.0, u_t), g), M.sub(1.0, u_prod)))
        v_hat = M.div(v, M.sub(1.0, b2p))
        step = M.div(M.mul(m_hat, ctx.lr), M.add(M.sqrt(v_hat), f32(self.epsilon)))
        return M.sub(var, step), {"momentum": m, "velocity": v}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}
