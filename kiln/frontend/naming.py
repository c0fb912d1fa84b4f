"""Keras-style automatic names (``dense``, ``dense_1``, ...) and IR name helpers."""
from __future__ import annotations

import collections
import re

_uids: collections.defaultdict = collections.defaultdict(int)


def to_snake_case(name: str) -> str:
    """``MaxPooling2D`` -> ``max_pooling2d``, ``InputLayer`` -> ``input_layer`` (as Keras)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def uniquify(name: str) -> str:
    """First use of ``name`` gives ``name``, then ``name_1``, ``name_2``, ..."""
    unique = f"{name}_{_uids[name]}" if name in _uids else name
    _uids[name] += 1
    return unique


def auto_name(class_name: str) -> str:
    return uniquify(to_snake_case(class_name))


def reset_names() -> None:
    _uids.clear()


def ir_name(name: str) -> str:
    """A name usable for an IR value or graph: letters, digits, '_' and '.', not
    starting with a digit (other characters become '_')."""
    s = re.sub(r"[^A-Za-z0-9_.]", "_", name) or "_"
    return "_" + s if s[0].isdigit() else s


def clear_session() -> None:
    """Reset kiln's global frontend state (the automatic-name counters), as
    ``keras.utils.clear_session()`` does."""
    reset_names()
