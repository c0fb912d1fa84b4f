"""kiln's typed graph IR: types, graphs, ops, text form, verifier, interpreter."""
from . import ops as _ops  # noqa: F401  (registers every op)
from .graph import Graph, Node, Value, current_graph
from .interpreter import interpret
from .opdef import OPS, Attr, AttrKind, Kind, OpDef, OpTypeError, get_op, register
from .parser import ParseError, parse
from .printer import print_graph
from .types import BATCH, DType, TensorType
from .verifier import VerifyError, verify

__all__ = ["Graph", "Node", "Value", "current_graph", "interpret", "OPS", "Attr", "AttrKind",
           "Kind", "OpDef", "OpTypeError", "get_op", "register", "ParseError", "parse",
           "print_graph", "BATCH", "DType", "TensorType", "VerifyError", "verify"]
