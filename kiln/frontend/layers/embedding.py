"""``Embedding``: integer ids -> rows of a learned table (Keras 3)."""
from __future__ import annotations

from ...ir.types import DType
from .. import initializers as _initializers
from .. import ops
from .arguments import positive_int, unsupported
from .base import Layer


class Embedding(Layer):
    """``embeddings[inputs]``: the table is ``embeddings (input_dim, output_dim)``; the
    output has the inputs' shape plus ``output_dim``. Non-integer inputs are cast to
    int32 (as Keras). An id outside ``[0, input_dim)``: the interpreter raises, compiled
    code gives a zero row (kiln's ``gather``)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, lora_alpha=None, quantization_config=None,
                 input_length=None, **kwargs):
        super().__init__(**kwargs)
        if mask_zero:
            raise NotImplementedError(f'Embedding layer "{self.name}": mask_zero=True is not '
                                      f"supported by kiln (masks are not propagated yet)")
        unsupported("Embedding", embeddings_regularizer=embeddings_regularizer,
                    embeddings_constraint=embeddings_constraint, lora_rank=lora_rank,
                    lora_alpha=lora_alpha, quantization_config=quantization_config)
        self.input_dim = positive_int(input_dim, "input_dim")
        self.output_dim = positive_int(output_dim, "output_dim")
        self.embeddings_initializer = _initializers.get(embeddings_initializer)
        self.mask_zero = False
        self.input_length = input_length   # Keras 2 argument; Keras 3 ignores it too
        self.embeddings = None
        if weights is not None:
            self.build(None)
            self.set_weights(weights if isinstance(weights, list) and len(weights) == 1
                             else [weights])

    def build(self, input_shape=None):
        if self.embeddings is None:
            self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                              initializer=self.embeddings_initializer,
                                              name="embeddings")

    def call(self, inputs):
        if inputs.dtype not in (DType.i32, DType.i64):
            inputs = ops.cast(inputs, "int32")
        return ops.take(self.embeddings, inputs, axis=0)
