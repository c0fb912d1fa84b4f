"""Helpers for pass tests: IR text in, with parameter values attached."""
import textwrap

import numpy as np

from kiln.ir import parse


def ir(text: str) -> str:
    """Dedent an IR snippet written inline in a test."""
    return textwrap.dedent(text).lstrip("\n")


def parse_with(text: str, **values):
    """Parse IR text and hold ``values`` for its params (names with '.' use '__')."""
    g = parse(ir(text))
    for k, v in values.items():
        name = k.replace("__", ".")
        assert name in g.params, f"no param %{name} in the test graph"
        g.param_values[name] = np.asarray(v, dtype=g.params[name].type.dtype.np)
    return g
