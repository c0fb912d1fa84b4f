"""Recurrent layers: SimpleRNN, LSTM, GRU and the Bidirectional wrapper (Keras 3).

Each recurrence is ONE ``scan`` node (kiln/ir/ops/control.py), whatever the sequence
length. The input projection ``x @ kernel (+ bias)`` does not depend on the state, so
it is computed for every time step at once, before the loop (one large matmul); the
scan's body holds only the recurrent part, with the recurrent kernel (and recurrent
bias) passed in as loop invariants. Equations are Keras' (``keras/src/layers/rnn``):

- SimpleRNN: ``h = act(x W + b + h U)``
- LSTM (gates i, f, c, o): ``z = x W + b + h U``; ``c = f * c + i * act(z_c)``;
  ``h = o * act(c)`` with i, f, o = ``recurrent_activation`` of their slices
- GRU (gates z, r, h), ``reset_after=True``: ``m = h U + b_rec``;
  ``hh = act(x_h + r * m_h)``; ``reset_after=False``: ``hh = act(x_h + (r * h) U_h)``;
  then ``h = z * h + (1 - z) * hh``

Weights are Keras' (names, shapes, order): ``kernel (in, g*units)``,
``recurrent_kernel (units, g*units)``, ``bias`` (``(g*units,)``; GRU with
``reset_after``: ``(2, 3*units)``, input bias then recurrent bias), their paths those
of the Keras cell (``lstm/lstm_cell/kernel``).

``go_backwards`` runs the scan in reverse; as in Keras, the returned sequence is in
processing order (reversed), and the final state is the one after the first time step.
"""
from __future__ import annotations

import numpy as np

from ...ir.graph import Value, current_graph
from ...ir.ops.control import build_scan
from .. import activations as _activations
from .. import initializers as _initializers
from .. import ops
from .arguments import positive_int, unsupported
from .base import Layer


def scan(carries, sequences, invariants, body, axis=1, reverse=False):
    """Append a ``scan`` to the graph being built (see kiln/ir/ops/control.py).

    ``body(carries, steps, invariants) -> (new_carries, per_step_outputs)`` is traced
    once, into the scan's region, with ``kiln.ops`` (region inputs stand for the
    values; the body cannot read values of the enclosing graph directly -- pass them as
    invariants). Returns (final carries, stacked outputs)."""
    g = current_graph()
    carries, sequences, invariants = ([ops.convert(v) for v in vs]
                                      for vs in (carries, sequences, invariants))
    return build_scan(g, carries, sequences, invariants,
                      lambda _, cs, xs, ws: body(cs, xs, ws), axis=axis, reverse=reverse)


def _rate(value, name) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"`{name}` must be a float between 0 and 1, got {name}={value!r}")
    return float(value)


class _RNN(Layer):
    """Shared by SimpleRNN, LSTM and GRU: arguments, weights, the sequence loop."""

    GATES = 1          # gate blocks in kernel / recurrent_kernel
    STATES = 1         # carries (LSTM: h and c)
    CELL = "rnn_cell"  # the Keras cell's name (weight paths)

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        unsupported(kind, kernel_regularizer=kernel_regularizer,
                    recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
                    activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                    recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                    stateful=stateful)
        self.units = positive_int(units, "units")
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.recurrent_initializer = _initializers.get(recurrent_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        # dropout is the identity at inference; training masks come with [training]
        self.dropout = _rate(dropout, "dropout")
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout")
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)   # a loop either way: same results, one scan node
        self.seed = seed
        self.kernel = self.recurrent_kernel = self.bias = None
        self._config = dict(units=units, activation=activation, use_bias=use_bias,
                            kernel_initializer=kernel_initializer,
                            recurrent_initializer=recurrent_initializer,
                            bias_initializer=bias_initializer, dropout=dropout,
                            recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                            return_state=return_state, go_backwards=go_backwards, unroll=unroll,
                            seed=seed)

    # -- weights ------------------------------------------------------------------------
    def _bias_shape(self) -> tuple:
        return (self.GATES * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, sequences_shape):
        shape = tuple(sequences_shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(f'{type(self).__name__} layer "{self.name}" expects inputs of shape '
                             f"(batch, timesteps, features) with known features, got input "
                             f"shape {shape}")
        g = self.GATES * self.units
        self.kernel = self._weight((shape[-1], g), self.kernel_initializer, "kernel")
        self.recurrent_kernel = self._weight((self.units, g), self.recurrent_initializer,
                                             "recurrent_kernel")
        if self.use_bias:
            self.bias = self._weight(self._bias_shape(), self._bias_initializer(), "bias")

    def _weight(self, shape, init, name):
        v = self.add_weight(shape=shape, initializer=init, name=name)
        v.path = f"{self.name}/{self.CELL}/{name}"
        return v

    # -- the recurrence -----------------------------------------------------------------
    def _input_projection(self, x, kernel=None, bias=None):
        """x @ kernel (+ the input bias) for all time steps: [N, T, g*units]; inside a
        scan body ``kernel`` and ``bias`` are the body's copies (see ``_run``)."""
        y = ops.matmul(x, self.kernel if kernel is None else kernel)
        b = self._projection_bias() if bias is None else bias
        return y if b is None else ops.add(y, b)

    def _projection_bias(self):
        """What the input projection adds (None without a bias)."""
        return self.bias if self.use_bias else None

    def _invariants(self) -> list:
        return [self.recurrent_kernel]

    #: the step's pre-activation is x_t @ W + h @ U + b with nothing between (SimpleRNN,
    #: LSTM; not GRU, whose reset gate scales h @ U): inference may compute it as one GEMM
    MERGED_STEP = False

    def _step(self, states, xw, invariants) -> list:
        """New states from the previous ones and one step of the input projection
        (``invariants`` None: ``xw`` already holds the whole pre-activation, h @ U too)."""
        raise NotImplementedError

    def _check_call(self, sequences, mask, training):
        if mask is not None:
            raise NotImplementedError(f'{type(self).__name__} layer "{self.name}": masks '
                                      f"(mask=..., Embedding(mask_zero=True)) are not supported")
        if training and (self.dropout > 0 or self.recurrent_dropout > 0):
            raise NotImplementedError(f'{type(self).__name__} layer "{self.name}": dropout in '
                                      f"training comes with the [training] work (at inference "
                                      f"it is the identity)")
        if not isinstance(sequences, Value) or sequences.type.rank != 3:
            shape = getattr(sequences, "shape", None)
            raise ValueError(f'{type(self).__name__} layer "{self.name}" expects one input of '
                             f"shape (batch, timesteps, features), got {shape}")

    def _run(self, sequences, initial_state=None, mask=None, training=False):
        """(stacked outputs aligned with the inputs or None, final states)."""
        self._check_call(sequences, mask, training)
        x = sequences
        if x.dtype is not self._dtype:
            x = ops.cast(x, self._dtype)
        batch = x.shape[0]
        if initial_state is None:
            states = [ops.zeros((batch, self.units), self.dtype) for _ in range(self.STATES)]
        else:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) \
                else [initial_state]
            if len(states) != self.STATES:
                raise ValueError(f'{type(self).__name__} layer "{self.name}" expects '
                                 f"{self.STATES} initial state(s), got {len(states)}")
        seq = self.return_sequences
        invariants = self._invariants()
        # Time-major when the input is no wider than its projection (always for LSTM and
        # GRU: 3-4 units per unit): x is transposed once so every step's slice is
        # contiguous -- else the scan would stage a strided copy per step. Inference
        # projects each step inside the recurrence (no [T, N, 4*units] intermediate to
        # write and read back; the scan's rows can then run on separate threads with
        # all their data in cache); training projects all steps at once, before it,
        # so the backward pass gets the kernel's gradient as one GEMM.
        time_major = x.shape[-1] <= ops.convert(self.kernel).shape[-1]
        in_step = time_major and not training
        # MERGED_STEP: z = [x_t, h] @ [kernel; recurrent_kernel] + bias, ONE GEMM per step
        merged = in_step and self.MERGED_STEP
        if merged:
            invariants = []
        k = len(invariants)             # the step's own invariants; the projection's follow
        if in_step:
            kernel = ops.convert(self.kernel)
            if merged:
                kernel = ops.concatenate([kernel, ops.convert(self.recurrent_kernel)], axis=0)
            bias = self._projection_bias()
            invariants = invariants + [kernel] + ([bias] if bias is not None else [])
            sequence = ops.transpose(x, (1, 0, 2))
        else:
            sequence = self._input_projection(ops.transpose(x, (1, 0, 2)) if time_major else x)

        def body(cs, xs, ws):
            xw = xs[0]
            if in_step:
                if merged:
                    xw = ops.concatenate([xw, cs[0]], axis=-1)
                xw = self._input_projection(xw, ws[k], ws[k + 1] if len(ws) > k + 1 else None)
            new = self._step(cs, xw, None if merged else ws[:k])
            return new, ([new[0]] if seq else [])

        finals, stacked = scan(states, [sequence], invariants, body,
                               axis=0 if time_major else 1, reverse=self.go_backwards)
        ys = stacked[0] if seq else None
        if ys is not None and time_major:
            ys = ops.transpose(ys, (1, 0, 2))
        return ys, finals

    def call(self, sequences, initial_state=None, mask=None, training=False):
        ys, states = self._run(sequences, initial_state, mask, training)
        if ys is None:
            out = states[0]
        else:   # Keras returns the sequence in processing order
            out = _flip_time(ys, self) if self.go_backwards else ys
        return [out, *states] if self.return_state else out


def _flip_time(ys, layer):
    if isinstance(ys.shape[1], str):
        raise NotImplementedError(f'{type(layer).__name__} layer "{layer.name}": go_backwards with '
                                  f"return_sequences needs a known number of time steps (the "
                                  f"input shape's timesteps is None)")
    return ops.flip(ys, axis=1)


class SimpleRNN(_RNN):
    CELL = "simple_rnn_cell"
    MERGED_STEP = True

    def _step(self, states, xw, ws):
        (h,) = states
        return [self.activation(xw if ws is None else ops.add(xw, ops.matmul(h, ws[0])))]


class LSTM(_RNN):
    GATES, STATES, CELL = 4, 2, "lstm_cell"
    MERGED_STEP = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, use_cudnn="auto", **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.recurrent_activation = _activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.use_cudnn = use_cudnn
        self._config.update(recurrent_activation=recurrent_activation,
                            unit_forget_bias=unit_forget_bias, use_cudnn=use_cudnn)

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        u, init = self.units, self.bias_initializer

        def forget_one(shape, dtype=None):   # Keras: [init(u), ones(u), init(2u)]
            return np.concatenate([np.asarray(init((u,), dtype)), np.ones(u, dtype),
                                   np.asarray(init((2 * u,), dtype))])
        return forget_one

    def _step(self, states, xw, ws):
        h, c = states
        u = self.units
        z = xw if ws is None else ops.add(xw, ops.matmul(h, ws[0]))
        ra = self.recurrent_activation
        i, f, o = ra(z[:, :u]), ra(z[:, u:2 * u]), ra(z[:, 3 * u:])
        c = ops.add(ops.multiply(f, c), ops.multiply(i, self.activation(z[:, 2 * u:3 * u])))
        return [ops.multiply(o, self.activation(c)), c]


class GRU(_RNN):
    GATES, CELL = 3, "gru_cell"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", reset_after=True, use_cudnn="auto", **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.recurrent_activation = _activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)
        self.use_cudnn = use_cudnn
        self._config.update(recurrent_activation=recurrent_activation, reset_after=reset_after,
                            use_cudnn=use_cudnn)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _projection_bias(self):
        if not self.use_bias:
            return None
        b = ops.convert(self.bias)
        return b[0] if self.reset_after else b

    def _invariants(self):
        u = self.units
        if self.reset_after:
            return [self.recurrent_kernel] + ([ops.convert(self.bias)[1]] if self.use_bias else [])
        k = ops.convert(self.recurrent_kernel)
        return [k[:, :2 * u], k[:, 2 * u:]]

    def _step(self, states, xw, ws):
        (h,) = states
        u = self.units
        ra = self.recurrent_activation
        if self.reset_after:
            m = ops.matmul(h, ws[0])
            if self.use_bias:
                m = ops.add(m, ws[1])
            z = ra(ops.add(xw[:, :u], m[:, :u]))
            r = ra(ops.add(xw[:, u:2 * u], m[:, u:2 * u]))
            hh = self.activation(ops.add(xw[:, 2 * u:], ops.multiply(r, m[:, 2 * u:])))
        else:
            m = ops.matmul(h, ws[0])
            z = ra(ops.add(xw[:, :u], m[:, :u]))
            r = ra(ops.add(xw[:, u:2 * u], m[:, u:]))
            hh = self.activation(ops.add(xw[:, 2 * u:], ops.matmul(ops.multiply(r, h), ws[1])))
        return [ops.add(ops.multiply(z, h), ops.multiply(ops.subtract(1.0, z), hh))]


class Bidirectional(Layer):
    """Runs ``layer`` forwards and a copy of it backwards over the sequence and merges
    the two (``merge_mode``: concat, sum, ave, mul, or None for both). Weights: the
    forward layer's, then the backward layer's."""

    MERGE_MODES = ("concat", "sum", "ave", "mul", None)

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, _RNN):
            raise ValueError(f"Bidirectional expects a kiln recurrent layer (SimpleRNN, LSTM, "
                             f"GRU), got {layer!r}")
        if backward_layer is not None and not isinstance(backward_layer, _RNN):
            raise ValueError(f"`backward_layer` must be a kiln recurrent layer, got "
                             f"{backward_layer!r}")
        if merge_mode not in self.MERGE_MODES:
            raise ValueError(f"Invalid merge mode. Received: {merge_mode}. Merge mode should be "
                             f'one of {{"sum", "mul", "ave", "concat", None}}')
        super().__init__(**kwargs)
        cfg = {"trainable": layer.trainable, "dtype": layer.dtype, **layer._config}
        self.forward_layer = type(layer)(**{**cfg, "name": "forward_" + layer.name})
        if backward_layer is None:
            backward_layer = type(layer)(**{**cfg, "go_backwards": True,
                                            "name": "backward_" + layer.name})
        self.backward_layer = backward_layer
        if self.forward_layer.go_backwards == self.backward_layer.go_backwards:
            raise ValueError("Forward layer and backward layer should have different "
                             "`go_backwards` value.")
        for a in ("return_sequences", "return_state"):
            if getattr(self.forward_layer, a) != getattr(self.backward_layer, a):
                raise ValueError(f"Forward layer and backward layer are expected to have the "
                                 f'same value for attribute "{a}"')
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._initial_weights = weights

    def build(self, sequences_shape):
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub.build(tuple(sequences_shape))
                for v in sub.weights:
                    v.path = f"{self.name}/{v.path}"
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def call(self, sequences, initial_state=None, mask=None, training=False):
        fwd_state = bwd_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            fwd_state, bwd_state = initial_state[:half], initial_state[half:]
        f, b = self.forward_layer, self.backward_layer
        ys_f, fs = f._run(sequences, fwd_state, mask, training)
        ys_b, bs = b._run(sequences, bwd_state, mask, training)
        if self.return_sequences:
            # stacked outputs are aligned with the inputs; Keras merges the forward
            # layer's sequence (in its processing order) with the backward layer's
            # flipped: the aligned one, for a backward layer that goes backwards
            y = _flip_time(ys_f, f) if f.go_backwards else ys_f
            y_rev = ys_b if b.go_backwards else _flip_time(ys_b, b)
        else:
            y, y_rev = fs[0], bs[0]
        mode = self.merge_mode
        if mode == "concat":
            out = ops.concatenate([y, y_rev], axis=-1)
        elif mode == "sum":
            out = ops.add(y, y_rev)
        elif mode == "ave":
            out = ops.divide(ops.add(y, y_rev), 2.0)
        elif mode == "mul":
            out = ops.multiply(y, y_rev)
        else:
            out = [y, y_rev]
        if not self.return_state:
            return out
        return (out if mode is None else [out]) + list(fs) + list(bs)
