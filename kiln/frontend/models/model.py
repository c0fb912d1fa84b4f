"""``Model``: what every kiln model shares (predict, calling on data, summary,
get_layer, lowering, the cached compiled executable), and subclassed models.

- ``kiln.Model(inputs, outputs)`` makes a ``Functional`` model (models/functional.py);
  a subclass whose ``__init__`` calls ``super().__init__(inputs, outputs)`` becomes one too.
- ``class M(kiln.Model)`` with ``__init__`` creating layers and ``call(self, inputs,
  training=False)`` is a *subclassed* model: built on its first call (or ``build(shape)``)
  by tracing ``call`` on inputs of the data's shapes; Python control flow in ``call``
  is resolved at trace time. Its weights are those of the layers assigned to its
  attributes (directly or in lists), in assignment order.

Inputs and outputs may be one tensor, a list or a dict (dicts in sorted-key order, as
Keras' ``tree``); data given to ``predict`` / ``__call__`` follows the same structure
(a dict may also name a list-input model's inputs by their ``Input`` names).
"""
from __future__ import annotations

import numpy as np

from ...ir.graph import Graph
from ...ir.types import TensorType
from .. import tree
from ..layers.base import Layer, _is_tensor, standardize_shapes
from ..naming import ir_name
from ..shapes import to_dtype, to_ir_shape
from .training import TrainingMixin


def compile_model(model):
    """The model's compiled executable (the runtime is imported late: the frontend
    does not depend on it, only models that run do), for the target of
    ``model.compile(target=...)`` (default "cpu")."""
    from ...runtime import compile as runtime_compile
    return runtime_compile(model, target=model.__dict__.get("_target", "cpu"))


def functional_init_arguments(args, kwargs) -> bool:
    """Whether ``Model(...)`` was given inputs and outputs (as Keras decides)."""
    return (len(args) == 2 or (len(args) == 1 and "outputs" in kwargs)
            or ("inputs" in kwargs and "outputs" in kwargs))


class _Leaf:
    """A placeholder leaf in an input / output structure."""


class Model(TrainingMixin, Layer):   # compile/fit/evaluate: models/training.py
    """Base of kiln models. Subclasses provide ``_input_specs()`` (name, batch shape,
    IR dtype per input), ``_trace(input_values, training)`` (output Values) and
    ``layers``."""

    def __new__(cls, *args, **kwargs):
        if cls is Model and functional_init_arguments(args, kwargs):
            from .functional import Functional
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        if functional_init_arguments(args, kwargs):
            from .functional import Functional, inject_functional
            if not isinstance(self, Functional):
                inject_functional(type(self))   # a subclass with a functional __init__
            Functional.__init__(self, *args, **kwargs)
            return
        self._init_model(*args, **kwargs)

    def _init_model(self, name=None, trainable=True, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._exe = None
        self._exe_key = None
        self._structure_version = 0
        self._sub_specs = None      # subclassed models: (name, shape, dtype) per input
        self._sub_inputs = None     # subclassed models: input structure (placeholder leaves)
        self._sub_outputs = None    # subclassed models: output structure (placeholder leaves)

    # -- saving (kiln/saving) -----------------------------------------------------------
    def save(self, filepath, overwrite=True, **kwargs):
        """Save to ``.keras`` (Keras 3) or legacy ``.h5``, atomically."""
        from ...saving import save_model
        save_model(self, filepath, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath, overwrite=True):
        from ...saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False, by_name=False, **kwargs):
        from ...saving import load_weights
        load_weights(self, filepath, skip_mismatch=skip_mismatch, by_name=by_name)

    def to_json(self, **kwargs) -> str:
        from ...saving import to_json
        return to_json(self, **kwargs)

    def to_yaml(self, **kwargs) -> str:
        from ...saving import to_yaml
        return to_yaml(self, **kwargs)

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
        """Sequential and Functional models used as layers: their graph of layers."""
        if type(self)._trace is Model._trace:
            raise NotImplementedError(f"{type(self).__name__}: a subclassed model must "
                                      f"implement call(self, inputs, training=False)")
        outs = self._trace(tree.flatten(inputs), training=training)
        return tree.pack_as(self._output_structure(), outs)

    # -- subclassed models ----------------------------------------------------------------
    def build(self, input_shape=None):
        """Subclassed models: create the weights by tracing ``call`` on inputs of
        ``input_shape`` (batch dim None; a list / dict of shapes for several inputs)."""
        if input_shape is None:
            raise ValueError("You must provide an `input_shape` argument.")
        self._build_subclassed(standardize_shapes(input_shape), None)

    def _build_subclassed(self, shapes, dtypes):
        """Record the input structure (names, shapes, dtypes) and trace ``call`` once."""
        leaves = tree.flatten(_shape_leaves(shapes))
        dtypes = dtypes or [self._dtype] * len(leaves)
        if isinstance(shapes, dict):
            names = sorted(shapes)
        elif len(leaves) == 1 and not isinstance(shapes, list):
            names = ["inputs"]
        else:
            names = [f"inputs_{i}" for i in range(len(leaves))]
        specs = [(n, leaf.shape, to_dtype(dt)) for n, leaf, dt in zip(names, leaves, dtypes)]
        self._sub_specs, self._sub_inputs = specs, _shape_leaves(shapes)
        self._invalidate()
        g = Graph(ir_name(self.name))
        values = [g.add_input(ir_name(n), TensorType(to_ir_shape(s), dt)) for n, s, dt in specs]
        self.built = True   # the trace below must not build again
        try:
            with g.building():
                self._trace(values, training=False)
        except BaseException:
            self.built = False
            self._sub_specs = self._sub_inputs = None
            raise
        self._build_input_shape = shapes

    def _output_structure(self):
        """The output structure, with placeholder leaves (packs flat outputs); one
        output unless a subclassed model's trace recorded another structure."""
        return self._sub_outputs if self._sub_outputs is not None else _Leaf()

    # -- what lowering needs (subclassed models; Sequential and Functional override) ------
    def _input_specs(self) -> list:
        if self._sub_specs is None:
            raise ValueError(f'Model "{self.name}" has not been built: its input shapes are '
                             f"unknown. Call it or predict on data first, or call "
                             f"model.build(input_shape).")
        return list(self._sub_specs)

    def _trace(self, inputs, training=False) -> list:
        """Subclassed models: ``call`` on the input Values (packed as the model's input
        structure); returns the flat output Values."""
        x = tree.pack_as(self._sub_inputs, inputs)
        out = self._call_symbolic((x,), {}, training)
        self._sub_outputs = tree.map_structure(lambda v: _Leaf(), out)
        return tree.flatten(out)

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

    def _input_keys(self) -> list:
        """Names a dict of data may use for the inputs, in input order."""
        return [name for name, _, _ in self._input_specs()]

    def _data_leaves(self, x) -> list:
        """Data (an array, a list / tuple or a dict of arrays) -> one array per input."""
        if isinstance(x, dict):
            keys = self._input_keys() if self.built else sorted(x)
            missing = [k for k in keys if k not in x]
            if missing:
                raise ValueError(f'Model "{self.name}": the input data dict has keys '
                                 f"{sorted(x)}; expected {keys} (missing {missing})")
            return [np.asarray(x[k]) for k in keys]
        if isinstance(x, (list, tuple)):
            n = len(self._input_specs()) if self.built else None
            arrays = bool(x) and all(isinstance(e, np.ndarray) for e in x)
            if (n is not None and n > 1) or (arrays and (n is None or len(x) == 1)):
                return [np.asarray(e) for e in x]
        return [np.asarray(x)]   # one input (a nested list of numbers is one array)

    def _prepare_inputs(self, x) -> list:
        """One array per model input, cast to the input dtypes (building a lazily-built
        model from the data's shapes first)."""
        arrays = self._data_leaves(x)
        if not self.built:
            if any(a.ndim == 0 for a in arrays):
                raise ValueError(f'Model "{self.name}" expects a batch of samples (an array '
                                 f"whose first axis is the batch), got a scalar")
            shapes = [(None,) + a.shape[1:] for a in arrays]
            self._build_from_data(x, shapes, arrays)
        specs = self._input_specs()
        if len(arrays) != len(specs):
            raise ValueError(f'Model "{self.name}" expects {len(specs)} input(s) '
                             f"({', '.join(n for n, _, _ in specs)}), got {len(arrays)}")
        return [a.astype(dt.np, copy=False) if a.dtype.kind in "biuf" else a
                for a, (_, _, dt) in zip(arrays, specs)]

    def _build_from_data(self, x, shapes, arrays):
        if isinstance(x, dict):
            structure = {k: s for k, s in zip(sorted(x), shapes)}
        elif len(shapes) == 1 and not isinstance(x, (list, tuple)):
            structure = shapes[0]
        else:
            structure = list(shapes)
        if type(self)._trace is Model._trace:   # subclassed: the data's dtypes count
            self._build_subclassed(structure, [self._data_dtype(a) for a in arrays])
        else:
            self.build(structure)

    def _data_dtype(self, a):
        if a.dtype.kind == "b":
            return to_dtype("bool")
        if a.dtype.kind in "iu":
            return to_dtype("int64" if a.dtype == np.int64 else "int32")
        return self._dtype

    def _prepare_input(self, x):
        """The single-input form of ``_prepare_inputs`` (an array), or the list."""
        arrays = self._prepare_inputs(x)
        return arrays[0] if len(arrays) == 1 else arrays

    def _pack_outputs(self, outs: list):
        return tree.pack_as(self._output_structure(), outs)

    def __call__(self, *args, **kwargs):
        if any(_is_tensor(t) for t in tree.flatten([list(args), kwargs])):
            return super().__call__(*args, **kwargs)
        training = kwargs.pop("training", None)
        if training:
            raise NotImplementedError("calling a model with training=True comes with the "
                                      "[training] work")
        if len(args) != 1 or kwargs:
            raise TypeError(f'Model "{self.name}": call it on its input data, e.g. model(x) '
                            f"(got {len(args)} positional and {sorted(kwargs)} keyword "
                            f"arguments)")
        arrays = self._prepare_inputs(args[0])   # builds a lazily-built model first
        outs = self._executable()(*arrays)
        return self._pack_outputs(list(outs) if isinstance(outs, tuple) else [outs])

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Run the compiled model over ``x`` in batches of ``batch_size`` (default 32);
        returns the outputs concatenated along the batch axis (numpy), in the model's
        output structure (an array, a list or a dict of arrays)."""
        if batch_size is None:
            batch_size = 32
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"predict: batch_size must be a positive integer, got {batch_size!r}")
        from .batches import _is_batch_iterable, _predict_inputs
        if _is_batch_iterable(x):       # a Dataset / generator of x or (x, y[, sw]) batches
            return self._predict_batches(_predict_inputs(x, steps))
        arrays = self._prepare_inputs(x)
        if any(a.ndim == 0 or a.shape[0] == 0 for a in arrays):
            bad = next(a for a in arrays if a.ndim == 0 or a.shape[0] == 0)
            raise ValueError(f"predict: x must hold at least one sample, got shape {bad.shape}")
        sizes = {a.shape[0] for a in arrays}
        if len(sizes) != 1:
            raise ValueError(f"predict: all inputs must have the same number of samples, got "
                             f"{[a.shape[0] for a in arrays]}")
        total = sizes.pop()
        n = total if steps is None else min(total, int(steps) * batch_size)
        exe = self._executable()
        batches = []
        for i in range(0, n, batch_size):
            out = exe(*[a[i:i + batch_size] for a in arrays])
            batches.append([np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))])
        outs = [b[0] if len(batches) == 1 else np.concatenate(b, axis=0)
                for b in zip(*batches)]
        return self._pack_outputs(outs)

    def _predict_batches(self, inputs):
        exe, batches = None, []
        for bx in inputs:
            arrays = self._prepare_inputs(bx)       # builds a lazily-built model first
            if exe is None:
                exe = self._executable()
            out = exe(*arrays)
            batches.append([np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))])
        if not batches:
            raise ValueError("predict: the iterable of batches yielded nothing")
        return self._pack_outputs([np.concatenate(b, axis=0) for b in zip(*batches)])

    def predict_on_batch(self, x):
        return self(x)

    # -- reporting ----------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        from ..summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                      expand_nested=expand_nested, show_trainable=show_trainable,
                      layer_range=layer_range)


def _shape_leaves(shapes):
    """A shape structure with each shape wrapped as a leaf (tuples are containers)."""
    from ..layers.base import _shape_structure
    return _shape_structure(shapes)
