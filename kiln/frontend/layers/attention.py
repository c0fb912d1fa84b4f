"""``MultiHeadAttention`` (Keras 3), for inputs of shape (batch, seq, features).

As Keras, with ``B`` batch, ``T`` query length, ``S`` key/value length, ``H`` heads:

    q = query @ Wq + bq        [B, T, H, key_dim]    (Wq: (d_query, H, key_dim))
    k = key @ Wk + bk          [B, S, H, key_dim]
    v = value @ Wv + bv        [B, S, H, value_dim]
    scores = softmax(q . k / sqrt(key_dim), over S; masked positions -> a large
             negative number before the softmax)          [B, H, T, S]
    out = (scores @ v) @ Wo + bo   (Wo: (H, value_dim, *output_shape))

``attention_mask`` is (B, T, S) (or broadcastable to it; nonzero / True = attend);
``use_causal_mask`` allows position t to attend to positions <= t. The projections
are sub-layers named ``query``, ``key``, ``value``, ``attention_output`` (as Keras'
EinsumDense layers), so the weights are, in order, their kernels and biases.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.types import DType
from .. import initializers as _initializers
from .. import ops
from .arguments import positive_int, unsupported
from .base import Layer

# what Keras' dot_product_attention puts at masked positions (-0.7 * float32 max)
_MASKED = -0.7 * float(np.finfo(np.float32).max)


class _Projection(Layer):
    """x [..., *in_dims] -> [..., *out_dims]: a contraction of the last ``len(in_dims)``
    axes with ``kernel (*in_dims, *out_dims)``, plus ``bias (*out_dims)`` (Keras'
    EinsumDense as MultiHeadAttention builds it)."""

    def __init__(self, in_dims, out_dims, use_bias, kernel_initializer, bias_initializer, **kw):
        super().__init__(**kw)
        self.in_dims, self.out_dims = tuple(in_dims), tuple(out_dims)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel = self.bias = None

    def build(self, input_shape=None):
        self.kernel = self.add_weight(shape=self.in_dims + self.out_dims,
                                      initializer=self.kernel_initializer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=self.out_dims, initializer=self.bias_initializer,
                                        name="bias")

    def call(self, x):
        k_in, k_out = math.prod(self.in_dims), math.prod(self.out_dims)
        lead = tuple(x.shape[:x.type.rank - len(self.in_dims)])
        y = ops.matmul(ops.reshape(x, lead + (k_in,)), ops.reshape(self.kernel, (k_in, k_out)))
        if self.use_bias:
            y = ops.add(y, ops.reshape(self.bias, (k_out,)))
        return ops.reshape(y, lead + self.out_dims)


class MultiHeadAttention(Layer):
    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, attention_axes=None, flash_attention=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False,
                 sliding_window=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        unsupported("MultiHeadAttention", kernel_regularizer=kernel_regularizer,
                    bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                    kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                    use_gate=use_gate, sliding_window=sliding_window)
        if attention_axes is not None and tuple(np.atleast_1d(attention_axes)) not in ((1,), (-2,)):
            raise NotImplementedError(f"MultiHeadAttention: attention_axes={attention_axes!r} is "
                                      f"not supported by kiln (attention over axis 1 only)")
        self.num_heads = positive_int(num_heads, "num_heads")
        self.key_dim = positive_int(key_dim, "key_dim")
        self.value_dim = (positive_int(value_dim, "value_dim") if value_dim is not None
                          else self.key_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"`dropout` must be a float between 0 and 1, got dropout={dropout!r}")
        self.dropout = float(dropout)     # the identity at inference
        self.use_bias = bool(use_bias)
        if output_shape is not None:
            output_shape = (positive_int(output_shape, "output_shape"),) if not isinstance(
                output_shape, (tuple, list)) else tuple(positive_int(d, "output_shape")
                                                        for d in output_shape)
        self.output_shape_arg = output_shape
        self.flash_attention = flash_attention   # an implementation choice: same results
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.seed = seed

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        for what, s in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if s is None or len(s) != 3 or s[-1] is None:
                raise ValueError(f'MultiHeadAttention layer "{self.name}": {what} must have shape '
                                 f"(batch, seq, features) with known features, got {s}")
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(f"All dimensions of `value` and `key`, except the last one, must be "
                             f"equal. Received: value_shape={value_shape} and "
                             f"key_shape={key_shape}")
        h = self.num_heads
        out = self.output_shape_arg or (query_shape[-1],)

        def proj(name, d_in, out_dims, in_dims=None):
            p = _Projection(in_dims or (d_in,), out_dims, self.use_bias,
                            self.kernel_initializer, self.bias_initializer, name=name)
            p.build()
            for v in p.weights:
                v.path = f"{self.name}/{name}/{v.name}"
            return p

        self.query_dense = proj("query", query_shape[-1], (h, self.key_dim))
        self.key_dense = proj("key", key_shape[-1], (h, self.key_dim))
        self.value_dense = proj("value", value_shape[-1], (h, self.value_dim))
        self.output_dense = proj("attention_output", None, out, in_dims=(h, self.value_dim))

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
             attention_mask=None, return_attention_scores=False, training=False,
             use_causal_mask=False):
        unsupported("MultiHeadAttention", query_mask=query_mask, value_mask=value_mask,
                    key_mask=key_mask)
        if training and self.dropout > 0:
            raise NotImplementedError("MultiHeadAttention: dropout in training comes with the "
                                      "[training] work (at inference it is the identity)")
        key = value if key is None else key
        q = ops.transpose(self.query_dense(query), (0, 2, 1, 3))   # [B, H, T, Kd]
        k = ops.transpose(self.key_dense(key), (0, 2, 3, 1))       # [B, H, Kd, S]
        v = ops.transpose(self.value_dense(value), (0, 2, 1, 3))   # [B, H, S, Vd]
        q = ops.multiply(q, 1.0 / math.sqrt(self.key_dim))
        scores = ops.matmul(q, k)                                  # [B, H, T, S]
        mask = self._mask(query, value, attention_mask, use_causal_mask)
        if mask is not None:
            scores = ops.where(mask, scores, _MASKED)
        probs = ops.softmax(scores, axis=-1)
        ctx = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))    # [B, T, H, Vd]
        out = self.output_dense(ctx)
        return [out, probs] if return_attention_scores else out

    def _mask(self, query, value, attention_mask, use_causal_mask):
        """A bool mask broadcastable to the scores [B, H, T, S], or None."""
        mask = None
        if attention_mask is not None:
            m = ops.convert(attention_mask)
            if m.dtype is not DType.bool:
                m = ops.cast(m, "bool")          # nonzero: attend
            if m.type.rank == 3:
                m = ops.expand_dims(m, 1)        # [B, 1, T, S]: the same for every head
            mask = m
        if use_causal_mask:
            t, s = query.shape[1], value.shape[1]
            if isinstance(t, str) or isinstance(s, str):
                raise NotImplementedError("MultiHeadAttention: use_causal_mask needs static "
                                          "sequence lengths")
            causal = ops.convert(np.tril(np.ones((t, s), bool)))
            mask = causal if mask is None else ops.logical_and(mask, causal)
        return mask

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        out = self.output_shape_arg or (query_shape[-1],)
        return tuple(query_shape[:-1]) + tuple(out)
