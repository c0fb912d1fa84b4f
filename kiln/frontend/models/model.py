"""``Model``: what every kiln model shares (predict, calling on data, summary,
get_layer, lowering, the cached compiled executable). ``Sequential`` is one."""
from __future__ import annotations

import numpy as np

from ...ir.graph import Value
from ..layers.base import Layer


def compile_model(model):
    """The model's compiled executable (the runtime is imported late: the frontend
    does not depend on it, only models that run do)."""
    from ...runtime import compile as runtime_compile
    return runtime_compile(model)


class Model(Layer):
    """Base of kiln models. Subclasses provide ``_input_specs()`` (name, batch shape,
    IR dtype per input), ``_trace(input_values, training)`` (output Values) and
    ``layers``."""

    def __init__(self, name=None, trainable=True, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._exe = None
        self._exe_key = None
        self._structure_version = 0

    # -- structure ----------------------------------------------------------------------
    @property
    def layers(self) -> list:
        return list(self._layers)

    def _invalidate(self):
        """Forget the compiled executable (structure changed)."""
        self._structure_version += 1
        self._exe = None
        self._exe_key = None

    def get_layer(self, name=None, index=None):
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(layers)} layers.")
            return layers[index]
        if name is not None:
            for layer in layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[layer.name for layer in layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    def call(self, inputs, training=False):
        return self._trace([inputs], training=training)[0]

    # -- lowering and running -----------------------------------------------------------
    def _lower(self, training: bool = False):
        from ..lowering import lower
        return lower(self, training=training)

    def _executable(self):
        """The compiled executable, recompiled when the structure or a weight changed."""
        key = (self._structure_version, tuple(v.version for v in self.weights))
        if self._exe is None or self._exe_key != key:
            self._exe = None
            self._exe = compile_model(self)
            self._exe_key = key
        return self._exe

    def _prepare_input(self, x) -> np.ndarray:
        a = np.asarray(x)
        if not self.built:
            if a.ndim == 0:
                raise ValueError(f'Model "{self.name}" expects a batch of samples (an array whose '
                                 f"first axis is the batch), got a scalar")
            self.build((None,) + a.shape[1:])
        specs = self._input_specs()
        if len(specs) == 1 and a.dtype.kind in "biuf":
            a = a.astype(specs[0][2].np, copy=False)
        return a

    def __call__(self, inputs, training=False, **kwargs):
        if isinstance(inputs, Value):
            return super().__call__(inputs, training=training, **kwargs)
        if training:
            raise NotImplementedError("calling a model with training=True comes with the "
                                      "[training] work")
        return self._executable()(self._prepare_input(inputs))

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Run the compiled model over ``x`` in batches of ``batch_size`` (default 32);
        returns the outputs concatenated along the batch axis (numpy)."""
        if batch_size is None:
            batch_size = 32
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"predict: batch_size must be a positive integer, got {batch_size!r}")
        x = self._prepare_input(x)
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"predict: x must hold at least one sample, got shape {x.shape}")
        n = x.shape[0] if steps is None else min(x.shape[0], int(steps) * batch_size)
        exe = self._executable()
        outs = [np.asarray(exe(x[i:i + batch_size])) for i in range(0, n, batch_size)]
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)

    def predict_on_batch(self, x):
        return self(x)

    # -- reporting ----------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        from ..summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                      expand_nested=expand_nested, show_trainable=show_trainable,
                      layer_range=layer_range)
