"""One LSTM step as one op: the gate GEMM and the gates, for the CPU's packed layout.

    h', c' = lstm_cell_packed(xh, wp, bias, c){n, block, activation, recurrent_activation}

``xh`` [N, K] is the step's input and the previous h side by side; ``wp`` the [K, n]
kernel (n = 4 * units, Keras' gate order i, f, c, o) with its columns *interleaved by
blocks* and packed by ``pack_panels``; ``bias`` [n] interleaved the same way; ``c``
[N, units] the previous cell state. Interleaved by ``block``: column
``4*block*q + block*k + j`` holds gate k of unit ``block*q + j`` (``interleave``), so
each panel of the GEMM (nr = 4 * block columns on the CPU) holds all four gates of
``block`` units, and the kernel computes the gates of a panel while its row of
pre-activations is still in registers' reach -- the [N, 4*units] pre-activations are
never written to memory and no separate gate kernel runs per step. Then, with
``ra`` = recurrent_activation and ``act`` = activation (names of unary elementwise ops):

    z = xh @ W + bias;  i, f, o = ra(z_i), ra(z_f), ra(z_o);  g = act(z_c)
    c' = f * c + i * g;  h' = o * act(c')

The layout pass makes it of a recurrence body's ``matmul -> add -> slices ->
activations`` (kiln/passes/lstm_cell.py: inference with a known kernel).

With two more operands, ``lstm_cell_packed(xh, wp, bias, c, xw, ok){x_width}``, the
step may take its input projection ready-made: when ``ok`` (a bool scalar) is true,
``xw`` [N, n] holds ``xh[:, :x_width] @ W[:x_width]`` (made for every step at once by
``lstm_project``, below) and the kernel multiplies only the h part, its sums starting
from ``xw`` -- the same sums, k in the same order, as the whole GEMM. When ``ok`` is
false ``xw`` is not read. The result is the 4-operand op's either way.

    xw, ok = lstm_project(x, wp){n, x_width, max_rows}

``x`` [T, N, x_width] is a recurrence's whole (time-major) input and ``wp`` the cell's
packed kernel: ``xw`` [T, N, n] = x @ W[:x_width] and ``ok`` = true when N <=
``max_rows`` -- else nothing is computed and ``ok`` is false. At batch 1 an LSTM step
is a matrix-vector product that streams all of W from cache each step; with the x
part done beforehand for all steps as one GEMM (W[:x_width] read once, not T times),
each step streams only the recurrent rows. At large batches the step's GEMM reuses W
across rows already and the [T, N, n] projection would only add memory traffic.
"""
from __future__ import annotations

import numpy as np

from ..opdef import OPS, Attr, AttrKind, Kind, OpDef, OpTypeError, register
from ..types import DType, TensorType
from .layout import unpack_panels

GATES = 4


def interleave(n: int, block: int) -> np.ndarray:
    """Column order of the interleaved layout: entry q is the Keras column that column
    q holds (``w[:, interleave(n, block)]`` interleaves a [K, n] kernel)."""
    u = n // GATES
    q = np.arange(u // block)[:, None, None]
    k = np.arange(GATES)[None, :, None]
    j = np.arange(block)[None, None, :]
    return (k * u + q * block + j).reshape(-1)


def unary_activation(name) -> bool:
    """Whether ``name`` is a unary elementwise op (one operand, no attributes)."""
    op = OPS.get(name)
    return (op is not None and op.kind is Kind.ELEMENTWISE and op.num_inputs == 1
            and not any(a.required for a in op.attrs))


@register
class LSTMCellPacked(OpDef):
    name = "lstm_cell_packed"
    kind = Kind.OPAQUE
    family = "lstm_cell_packed"
    num_inputs = None         # 4, or 6 with a ready-made input projection
    attrs = (Attr("n", AttrKind.INT), Attr("block", AttrKind.INT),
             Attr("activation", AttrKind.STR, "tanh"),
             Attr("recurrent_activation", AttrKind.STR, "sigmoid"), Attr("x_width", AttrKind.INT, 0))

    def infer(self, *types: TensorType, n, block, activation, recurrent_activation, x_width):
        if len(types) not in (4, 6):
            raise OpTypeError(f"lstm_cell_packed: expects 4 operands (xh, wp, bias, c), or 6 with "
                              f"xw and ok, got {len(types)}")
        xh, wp, bias, c, *projected = types
        if projected:
            xw, ok = projected
            if xw.shape != (xh.shape[0], n) or xw.dtype != xh.dtype or ok.shape != () \
                    or ok.dtype is not DType.bool:
                raise OpTypeError(f"lstm_cell_packed: expects xw [{xh.shape[0]}, {n}] of "
                                  f"{xh.dtype} and ok a bool scalar, got {xw}, {ok}")
            if not isinstance(xh.shape[1], int) or not 0 < x_width < xh.shape[1]:
                raise OpTypeError(f"lstm_cell_packed: x_width={x_width} must split xh {xh}")
        for what, name in (("activation", activation), ("recurrent_activation", recurrent_activation)):
            if not unary_activation(name):
                raise OpTypeError(f"lstm_cell_packed: {what} must name a unary elementwise op "
                                  f"(tanh, sigmoid, ...), got {name!r}")
        if block < 1 or n % (GATES * block):
            raise OpTypeError(f"lstm_cell_packed: n={n} must be 4 * units with units a multiple "
                              f"of block={block}")
        u = n // GATES
        if (xh.rank != 2 or wp.rank != 3 or bias.shape != (n,) or c.rank != 2
                or c.shape != (xh.shape[0], u)):
            raise OpTypeError(f"lstm_cell_packed: expects xh [N, K], panels [P, K, nr], bias "
                              f"[{n}] and c [N, {u}], got {xh}, {wp}, {bias}, {c}")
        npanels, k, nr = wp.shape
        if k != xh.shape[1] or npanels * nr != n or nr % (GATES * block):
            raise OpTypeError(f"lstm_cell_packed: panels {wp} must hold [{xh.shape[1]}, {n}] in "
                              f"whole panels of a multiple of {GATES * block} columns")
        if len({xh.dtype, wp.dtype, bias.dtype, c.dtype}) != 1 or not xh.dtype.is_float:
            raise OpTypeError(f"lstm_cell_packed: expects floating operands of one dtype, got "
                              f"{xh}, {wp}, {bias}, {c}")
        return c, c

    def reference(self, xh, wp, bias, c, *projected, n, block, activation, recurrent_activation,
                  x_width):
        u = n // GATES
        z = (xh @ unpack_panels(wp, n) + bias).reshape(len(xh), u // block, GATES, block)
        zi, zf, zc, zo = (z[:, :, k, :].reshape(len(xh), u) for k in range(GATES))
        act, ra = OPS[activation].reference, OPS[recurrent_activation].reference
        c_new = (ra(zf) * c + ra(zi) * act(zc)).astype(c.dtype)
        return (ra(zo) * act(c_new)).astype(c.dtype), c_new


@register
class LSTMProject(OpDef):
    name = "lstm_project"
    kind = Kind.OPAQUE
    family = "lstm_project"
    num_inputs = 2
    attrs = (Attr("n", AttrKind.INT), Attr("x_width", AttrKind.INT), Attr("max_rows", AttrKind.INT))

    def infer(self, x: TensorType, wp: TensorType, *, n, x_width, max_rows):
        if x.rank != 3 or wp.rank != 3 or x.shape[2] != x_width or x.dtype != wp.dtype \
                or not x.dtype.is_float:
            raise OpTypeError(f"lstm_project: expects x [T, N, {x_width}] and panels [P, K, nr] "
                              f"of one float dtype, got {x}, {wp}")
        npanels, k, nr = wp.shape
        if npanels * nr != n or not isinstance(k, int) or k <= x_width or max_rows < 1:
            raise OpTypeError(f"lstm_project: panels {wp} must hold [K > {x_width}, {n}] in whole "
                              f"panels, and max_rows >= 1 (got {max_rows})")
        return x.with_shape((*x.shape[:2], n)), TensorType((), DType.bool)

    def reference(self, x, wp, *, n, x_width, max_rows):
        xw = (x @ unpack_panels(wp, n)[:x_width]).astype(x.dtype)
        return xw, np.asarray(x.shape[1] <= max_rows)
