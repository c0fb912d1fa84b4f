"""``model.summary()`` in Keras 3's exact text format.

Keras 3 (``keras/src/utils/summary_utils.py``) draws a ``rich`` table: heavy-head box,
``show_lines=True``, padding of one space each side, table ``width=line_length``, fixed
column widths ``int(pos * line_length) - previous``; cells word-wrap at spaces, and
a word too long for its cell is cropped with an ellipsis (rich's default overflow).
Printed through a capturing console without colour, it is plain text. Since kiln may not depend on rich, the layout rich computes for exactly that
configuration is reproduced here (column sizing as rich's ``Table._calculate_column_widths``
with ``ratio_reduce``, wrapping as ``rich._wrap.divide_line`` without folding).
"""
from __future__ import annotations

import math
import re
import shutil
import sys

import numpy as np

# rich's HEAVY_HEAD box: top, head row, head/body separator, body rows, row separator, bottom
_TOP = ("┏", "━", "┳", "┓")
_HEAD = ("┃", "┃", "┃")
_HEAD_SEP = ("┡", "━", "╇", "┩")
_ROW = ("│", "│", "│")
_ROW_SEP = ("├", "─", "┼", "┤")
_BOTTOM = ("└", "─", "┴", "┘")


def count_params(weights) -> int:
    return int(sum(math.prod(v.shape) for v in weights))


def weight_memory_size(weights) -> float:
    unique = {id(w): w for w in weights}.values()
    return float(sum(math.prod(w.shape) * np.dtype(w.dtype).itemsize for w in unique))


def readable_memory_size(size: float) -> str:
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    for unit in units:
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} {units[-1]}"


def format_shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# -- rich's layout, for this table --------------------------------------------------------
def _ratio_reduce(total: int, ratios: list, maximums: list, values: list) -> list:
    ratios = [r if m else 0 for r, m in zip(ratios, maximums)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return values[:]
    remaining = total
    out = []
    for ratio, maximum, value in zip(ratios, maximums, values):
        if ratio and total_ratio > 0:
            distributed = min(maximum, round(ratio * remaining / total_ratio))
            out.append(value - distributed)
            remaining -= distributed
            total_ratio -= ratio
        else:
            out.append(value)
    return out


def _ratio_distribute(total: int, ratios: list) -> list:
    total_ratio = sum(ratios)
    remaining = total
    out = []
    for ratio in ratios:
        share = math.ceil(ratio * remaining / total_ratio) if total_ratio > 0 else remaining
        out.append(share)
        total_ratio -= ratio
        remaining -= share
    return out


def _column_widths(widths: list, table_width: int) -> list:
    """Rendered widths (content + 2 padding) of fixed-width columns in a rich Table of
    ``width=table_width`` with edges and one-space padding."""
    max_width = table_width - (len(widths) + 1)
    cols = [min(w + 2, max_width) for w in widths]
    total = sum(cols)
    if total > max_width:
        cols = _ratio_reduce(total - max_width, [1] * len(cols), cols, cols)
        cols = [min(w + 2, c) for w, c in zip(widths, cols)]
        total = sum(cols)
    if total < max_width:  # a table with a width set expands to it
        cols = [c + p for c, p in zip(cols, _ratio_distribute(max_width - total, cols))]
    return cols


def _wrap(text: str, width: int) -> list:
    """Break ``text`` into lines for a cell ``width`` wide, as rich does for a column
    with its default overflow ("ellipsis"): lines break at spaces, and a word longer
    than the cell gets a line of its own (``_justify`` then crops it to "…")."""
    lines = []
    for para in text.split("\n"):
        words = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+\s*", para)]
        breaks, offset = [], 0
        for start, word in words:
            wlen = len(word.rstrip())
            if width - offset >= wlen:
                offset += len(word)
            elif wlen > width:
                if start:
                    breaks.append(start)
                offset = len(word)
            elif offset and start:
                breaks.append(start)
                offset = len(word)
        bounds = [0] + breaks + [len(para)]
        lines += [para[a:b] for a, b in zip(bounds, bounds[1:])]
    return lines


def _justify(line: str, width: int, how: str) -> str:
    line = line.rstrip()
    if len(line) > width:
        line = line[:width - 1] + "…"
    if how == "right":
        return line.rjust(width)
    if how == "center":
        left = (width - len(line)) // 2
        return (" " * left + line).ljust(width)
    return line.ljust(width)


def _render_row(cells: list, cols: list, aligns: list, edges: tuple) -> list:
    wrapped = [_wrap(c, w - 2) for c, w in zip(cells, cols)]
    height = max(len(w) for w in wrapped)
    out = []
    for i in range(height):
        parts = [" " + _justify(w[i] if i < len(w) else "", c - 2, a) + " "
                 for w, c, a in zip(wrapped, cols, aligns)]
        out.append(edges[0] + edges[1].join(parts) + edges[2])
    return out


def _rule(cols: list, box: tuple) -> str:
    return box[0] + box[2].join(box[1] * c for c in cols) + box[3]


def render_table(header: list, aligns: list, column_widths: list, line_length: int, rows: list) -> list:
    cols = _column_widths(column_widths, line_length)
    lines = [_rule(cols, _TOP)]
    lines += _render_row(header, cols, aligns, _HEAD)
    lines.append(_rule(cols, _HEAD_SEP))
    for i, row in enumerate(rows):
        if i:
            lines.append(_rule(cols, _ROW_SEP))
        lines += _render_row(row, cols, aligns, _ROW)
    lines.append(_rule(cols, _BOTTOM))
    return lines


# -- the summary -------------------------------------------------------------------------
def _format_shapes(shapes) -> str:
    """One shape as ``(None, 4)``; several as ``[(None, 4), (None, 3)]`` (Keras)."""
    if isinstance(shapes, tuple):
        return format_shape(shapes)
    flat = list(shapes.values()) if isinstance(shapes, dict) else list(shapes)
    if len(flat) == 1:
        return _format_shapes(flat[0])
    return "[" + ", ".join(_format_shapes(s) for s in flat) + "]"


def _layer_shape(layer) -> str:
    nodes = getattr(layer, "_inbound_nodes", None)
    if nodes:   # as Keras: the output shape(s) of the layer's last call
        return _format_shapes([tuple(t.shape) for t in nodes[-1].output_tensors])
    if layer._last_output_shape is not None:
        return _format_shapes(layer._last_output_shape)
    if layer.built and layer._build_input_shape is not None:
        try:
            return _format_shapes(layer.compute_output_shape(layer._build_input_shape))
        except (NotImplementedError, ValueError, TypeError):
            return "?"
    return "?"


def _graph_info(model):
    """For a Functional model: (sequential_like, the ids of the model's nodes), as
    Keras decides it (one node per depth, each with one input, and no shared layer);
    None for other models."""
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        return None
    nodes = [n for v in by_depth.values() for n in v]
    relevant = {id(n) for n in nodes}
    sequential_like = all(len(v) == 1 and len(v[0].input_tensors) <= 1 for v in by_depth.values())
    if sequential_like:
        for layer in model.layers:
            if sum(id(n) in relevant for n in getattr(layer, "_inbound_nodes", [])) > 1:
                sequential_like = False
                break
    return sequential_like, relevant


def _connections(layer, relevant) -> str:
    parts = []
    for node in getattr(layer, "_inbound_nodes", []):
        if relevant and id(node) not in relevant:
            continue
        for t in node.input_tensors:
            src, node_index, tensor_index = t._keras_history
            parts.append(f"{src.name}[{node_index}][{tensor_index}]")
    return ", ".join(parts) or "-"


def _layer_range(layers, layer_range):
    if layer_range is None:
        return 0, len(layers)
    if len(layer_range) != 2:
        raise ValueError(f"layer_range must be a list or tuple of length 2. Received: "
                         f"layer_range = {layer_range} of length {len(layer_range)}")
    if not all(isinstance(s, str) for s in layer_range):
        raise ValueError(f"layer_range should contain string type only. Received: {layer_range}")
    lo = [i for i, l in enumerate(layers) if re.match(layer_range[0], l.name)]
    hi = [i for i, l in enumerate(layers) if re.match(layer_range[1], l.name)]
    if not lo or not hi:
        raise ValueError(f"Passed layer_names do not match the layer names in the model. "
                         f"Received: {layer_range}")
    if min(lo) > max(hi):
        return min(hi), max(lo) + 1
    return min(lo), max(hi) + 1


def summary_text(model, line_length=None, positions=None, expand_nested=False,
                 show_trainable=False, layer_range=None) -> str:
    layers = model.layers
    info = _graph_info(model)
    connected = info is not None and not info[0]
    if connected:
        default_line_length = 108
        positions = list(positions or [0.3, 0.56, 0.74, 1.0])
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        aligns = ["left", "left", "right", "left"]
    else:
        default_line_length = 88
        positions = list(positions or [0.45, 0.80, 1.0])
        header = ["Layer (type)", "Output Shape", "Param #"]
        aligns = ["left", "left", "right"]
    if show_trainable:
        default_line_length += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        aligns.append("center")
    default_line_length = min(default_line_length, shutil.get_terminal_size().columns - 4)
    line_length = line_length or default_line_length
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width

    def fields(layer, prefix=""):
        row = [f"{prefix}{layer.name} ({type(layer).__name__})", _layer_shape(layer),
               f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"]
        if connected:
            row.append(_connections(layer, info[1]))
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        return row

    def rows_for(layer, level=0):
        rows = [fields(layer, "   " * level + "└ " if level else "")]
        if expand_nested and getattr(layer, "layers", None):
            for sub in layer.layers:
                rows += rows_for(sub, level + 1)
        return rows

    lo, hi = _layer_range(layers, layer_range)
    rows = [r for layer in layers[lo:hi] for r in rows_for(layer)]

    trainable, non_trainable = model.trainable_weights, model.non_trainable_weights
    t_count, n_count = count_params(trainable), count_params(non_trainable)
    t_size, n_size = weight_memory_size(trainable), weight_memory_size(non_trainable)
    lines = [f'Model: "{model.name}"']
    lines += render_table(header, aligns, widths, line_length, rows)
    lines += [f" Total params: {t_count + n_count:,} ({readable_memory_size(t_size + n_size)})",
              f" Trainable params: {t_count:,} ({readable_memory_size(t_size)})",
              f" Non-trainable params: {n_count:,} ({readable_memory_size(n_size)})"]
    return "\n".join(lines) + "\n"


def print_summary(model, line_length=None, positions=None, print_fn=None, expand_nested=False,
                  show_trainable=False, layer_range=None):
    """Print the summary (or pass it, as one string, to ``print_fn``, as Keras 3 does)."""
    text = summary_text(model, line_length=line_length, positions=positions,
                        expand_nested=expand_nested, show_trainable=show_trainable,
                        layer_range=layer_range)
    if print_fn is not None:
        print_fn(text)
    else:
        sys.stdout.write(text)
