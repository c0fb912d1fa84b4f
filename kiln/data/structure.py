"""Element structures: an array, or a tuple / list / dict of structures (dicts keep their
key order). Everything in kiln.data maps over structures with these three helpers."""
from __future__ import annotations

import numpy as np


def flatten(s) -> list:
    """The leaves, depth first (dict values in key order)."""
    if isinstance(s, dict):
        return [leaf for v in s.values() for leaf in flatten(v)]
    if isinstance(s, (tuple, list)):
        return [leaf for v in s for leaf in flatten(v)]
    return [s]


def pack(template, leaves):
    """Rebuild ``template``'s structure from ``leaves`` (as ``flatten`` ordered them)."""
    it = iter(leaves)

    def go(t):
        if isinstance(t, dict):
            return {k: go(v) for k, v in t.items()}
        if isinstance(t, (tuple, list)):
            return type(t)(go(v) for v in t)
        return next(it)
    return go(template)


def map_structure(fn, s):
    return pack(s, [fn(a) for a in flatten(s)])


def is_structure(s) -> bool:
    """A tuple, a dict, or a list whose items are arrays (as Keras' list of inputs); a list
    of numbers is data, not a structure."""
    if isinstance(s, (tuple, dict)):
        return True
    return isinstance(s, list) and bool(s) and all(isinstance(v, (np.ndarray, dict))
                                                    or hasattr(v, "__array__") for v in s)


def as_arrays(s):
    """Every leaf as a numpy array (tuples, dicts and lists of arrays stay structures)."""
    if isinstance(s, dict):
        return {k: as_arrays(v) for k, v in s.items()}
    if is_structure(s):
        return type(s)(as_arrays(v) for v in s)
    return np.asarray(s)


def n_rows(block) -> int:
    leaves = flatten(block)
    sizes = {len(a) for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"the arrays of a dataset must all have the same number of rows (the "
                         f"first axis), got {[len(a) for a in leaves]}")
    return sizes.pop()
