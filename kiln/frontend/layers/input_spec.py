"""``InputSpec``: what a built layer accepts (rank and fixed axes), checked on every
call so that a layer called on an incompatible shape fails with a ``ValueError``
naming the layer, what it expects and the shape it got (Keras' wording)."""
from __future__ import annotations


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class InputSpec:
    def __init__(self, ndim=None, min_ndim=None, max_ndim=None, axes=None, shape=None):
        self.ndim = ndim
        self.min_ndim = min_ndim
        self.max_ndim = max_ndim
        self.axes = dict(axes or {})
        self.shape = tuple(shape) if shape is not None else None
        if self.shape is not None:
            self.ndim = len(self.shape)

    def __repr__(self):
        parts = [f"{k}={v}" for k, v in (("ndim", self.ndim), ("min_ndim", self.min_ndim),
                                         ("max_ndim", self.max_ndim), ("axes", self.axes or None),
                                         ("shape", self.shape)) if v is not None]
        return f"InputSpec({', '.join(parts)})"


def assert_input_compatibility(specs, shapes, layer_name: str) -> None:
    """Check each input shape (batch dim first, None = unknown) against its spec."""
    if specs is None:
        return
    specs = list(specs) if isinstance(specs, (list, tuple)) else [specs]
    if len(specs) == 1 and len(shapes) > 1:
        specs = specs * len(shapes) if specs[0] is not None else specs
    if len(specs) != len(shapes):
        raise ValueError(f'Layer "{layer_name}" expects {len(specs)} input(s), but it received '
                         f"{len(shapes)} input tensors.")
    for i, (spec, shape) in enumerate(zip(specs, shapes)):
        if spec is None:
            continue
        head = f'Input {i} of layer "{layer_name}" is incompatible with the layer: '
        ndim = len(shape)
        if spec.ndim is not None and ndim != spec.ndim:
            raise ValueError(f"{head}expected ndim={spec.ndim}, found ndim={ndim}. "
                             f"Full shape received: {_fmt(shape)}")
        if spec.min_ndim is not None and ndim < spec.min_ndim:
            raise ValueError(f"{head}expected min_ndim={spec.min_ndim}, found ndim={ndim}. "
                             f"Full shape received: {_fmt(shape)}")
        if spec.max_ndim is not None and ndim > spec.max_ndim:
            raise ValueError(f"{head}expected max_ndim={spec.max_ndim}, found ndim={ndim}. "
                             f"Full shape received: {_fmt(shape)}")
        for axis, value in spec.axes.items():
            if value is None:
                continue
            if not -ndim <= axis < ndim or shape[axis] not in (value, None):
                raise ValueError(f"{head}expected axis {axis} of input shape to have value "
                                 f"{value}, but received input with shape {_fmt(shape)}")
        if spec.shape is not None:
            for want, got in zip(spec.shape, shape):
                if want is not None and got is not None and want != got:
                    raise ValueError(f"{head}expected shape={_fmt(spec.shape)}, found "
                                     f"shape={_fmt(shape)}")
