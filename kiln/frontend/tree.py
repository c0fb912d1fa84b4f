"""Nested structures of tensors (a tensor, or lists / tuples / dicts of them), as
Keras' ``tree`` utilities see them: dicts flatten in sorted-key order."""
from __future__ import annotations


def is_nested(x) -> bool:
    return isinstance(x, (list, tuple, dict))


def flatten(structure) -> list:
    """The leaves of ``structure`` in order (dict values by sorted key)."""
    if isinstance(structure, dict):
        return [leaf for k in sorted(structure) for leaf in flatten(structure[k])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def pack_as(structure, flat):
    """Rebuild ``structure`` with the leaves ``flat`` (in ``flatten`` order)."""
    flat = list(flat)
    it = iter(flat)

    def build(s):
        if isinstance(s, dict):
            built = {k: build(s[k]) for k in sorted(s)}   # leaves in sorted-key order
            return {k: built[k] for k in s}               # the caller's key order
        if isinstance(s, (list, tuple)):
            items = [build(item) for item in s]
            return list(items) if isinstance(s, list) else tuple(items)
        return next(it)

    out = build(structure)
    if next(it, _END) is not _END:
        raise ValueError(f"pack_as: {len(flat)} leaves for a structure of "
                         f"{len(flatten(structure))}")
    return out


_END = object()


def map_structure(fn, structure):
    return pack_as(structure, [fn(leaf) for leaf in flatten(structure)])
