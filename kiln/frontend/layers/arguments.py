"""Argument checks shared by the layers (Keras' wording), and the one place that turns
arguments kiln does not implement into a clear ``NotImplementedError``."""
from __future__ import annotations

import numpy as np


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def standardize_tuple(value, n: int, name: str, allow_zero: bool = False) -> tuple:
    """An int (repeated n times) or n ints -> a tuple of n ints (> 0, or >= 0)."""
    t = (value,) * n if is_int(value) else value
    try:
        t = tuple(t)
    except TypeError:
        t = None
    if t is None or len(t) != n or not all(is_int(e) for e in t):
        raise ValueError(f"The `{name}` argument must be a tuple of {n} integers. "
                         f"Received {name}={value!r}")
    bad = [e for e in t if e < 0 or (e == 0 and not allow_zero)]
    if bad:
        req = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"The `{name}` argument must be a tuple of {n} integers {req}. "
                         f"Received {name}={value!r}")
    return tuple(int(e) for e in t)


def positive_int(value, name: str) -> int:
    if not is_int(value) or value <= 0:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a strictly positive "
                         f"integer. Received {name}={value!r}")
    return int(value)


def standardize_padding(value, allow_causal: bool = False) -> str:
    padding = value.lower() if isinstance(value, str) else value
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    if padding not in allowed:
        raise ValueError(f"The `padding` argument must be one of {allowed}. "
                         f"Received: padding={value!r}")
    return padding


def check_data_format(data_format, layer: str) -> str:
    if data_format in (None, "channels_last"):
        return "channels_last"
    if data_format == "channels_first":
        raise NotImplementedError(f"{layer}: data_format='channels_first' is not supported by "
                                  f"kiln (channels_last only)")
    raise ValueError(f"The `data_format` argument must be one of {{'channels_first', "
                     f"'channels_last'}}. Received: data_format={data_format!r}")


def unsupported(layer: str, **args) -> None:
    """Arguments kiln accepts by name but implements only at their default (None /
    False): any other value is a NotImplementedError naming it."""
    for name, value in args.items():
        if value is not None and value is not False:
            raise NotImplementedError(f"{layer}: argument `{name}` is not supported by kiln "
                                      f"(got {name}={value!r}; only the default is)")
