"""Row independence of a ``scan`` body: whether the batch rows of a recurrence can be
split between workers that each run the whole recurrence on their own rows, with no
synchronization between steps (every forward RNN; not a backward pass through time,
whose weight gradients sum over the batch). The CUDA target gives such row ranges to
separate blocks, the CPU target to separate threads."""
from __future__ import annotations

from ..ir.opdef import Kind

EW = (Kind.ELEMENTWISE, Kind.BROADCAST)


def _axis(a, rank) -> int:
    return a % rank if rank else 0


def _row_local(n, row: set, B) -> bool:
    """Whether row r of ``n``'s result reads only row r of its row-valued operands
    (``row``: values with the batch rows along axis 0, made during the step)."""
    out = n.outputs[0].type
    if (len(n.outputs) != 1 and n.op.family not in ("fusion", "lstm_cell_packed")) \
            or not out.rank or out.shape[0] != B \
            or any(o.type.rank != out.rank or o.type.shape[0] != B for o in n.outputs):
        return False
    fam, a = n.op.family, n.attrs
    if fam in ("reduce", "argmax"):       # keeps axis 0; may drop others
        axes = a["axes"] if fam == "reduce" else (a["axis"],)
        return all(_axis(x, n.inputs[0].type.rank) != 0 for x in axes)
    if fam == "reshape":                   # row-major: rows stay rows if both lead with B
        return True
    if any(u in row and u.type.rank != out.rank for u in n.inputs):
        return False                       # elsewhere axis 0 of a row operand is axis 0
    if n.op.kind in EW or fam == "fusion":
        return True
    if fam == "slice":
        return all(_axis(x, out.rank) != 0 for x in a["axes"])
    if fam == "pad":
        return a["pads"][0] == 0 and a["pads"][1] == 0
    if fam == "concat":
        return _axis(a["axis"], out.rank) != 0
    if fam == "transpose":
        return a["perm"][0] == 0
    if fam == "matmul":                    # [B,K] @ W, or batched over B
        return out.rank > 2 or n.inputs[1] not in row
    if fam == "matmul_packed":             # [B,K] @ packed W (the CPU's layout pass)
        return not a["transpose_a"] and n.inputs[1] not in row
    if fam == "lstm_cell_packed":          # rows of [x, h] and c; packed W and bias
        return n.inputs[1] not in row and n.inputs[2] not in row
    return False


def _rows_ok(nodes, row: set, B, region: bool) -> bool:
    """Every node of ``nodes`` computes its rows from the same rows only (adding its
    results to ``row``); outside a fusion region a node must depend on the rows (a
    node reading only invariants would be written by every block)."""
    for n in nodes:
        if not any(u in row for u in n.inputs):
            if region or n.op.family in ("constant", "reshape"):
                continue
            return False
        if not _row_local(n, row, B):
            return False
        if n.op.family == "fusion":
            r = n.regions[0]
            inner = {p for p, u in zip(r.inputs, n.inputs) if u in row}
            if not _rows_ok(r.nodes, inner, B, True) or any(o not in inner for o in r.outputs):
                return False
        row.update(n.outputs)
    return True


def row_dim(node):
    """The batch dimension B when the scan's body is row-independent (every carry,
    sequence step and yielded value has B rows along axis 0, and row r of every step
    depends on row r only): then blocks own disjoint row ranges and need no grid-wide
    sync. None otherwise (one block runs the whole recurrence)."""
    (body,) = node.regions
    nc, ns = node.attrs["num_carries"], node.attrs["num_sequences"]
    varying = body.inputs[:nc + ns]
    if any(not v.type.rank for v in [*varying, *body.outputs]):
        return None
    B = varying[0].type.shape[0]
    if isinstance(B, int) and B <= 1:
        return None
    if any(v.type.shape[0] != B for v in [*varying, *body.outputs]):
        return None
    return B if _rows_ok(body.nodes, set(varying), B, False) else None


#: rows per work unit when the CPU splits a row-independent recurrence across threads:
#: the GEMM microkernel's MR, so a chunk's per-step GEMMs are whole register tiles (with
#: 8, a 64-row chunk left 4 rows to the matrix-vector path every step: LSTM batch 256
#: 5% slower, batch 64 7%, in-process A/B)
SPLIT_ROWS = 6


def split_rows(node):
    """The batch symbol when the CPU runs this scan's rows in parallel units of
    SPLIT_ROWS rows, each unit its own whole recurrence with its own scratch: the body
    is row-independent (``row_dim``), the batch is a symbol, every sequence and stacked
    output is time-major (axis 0: a unit's rows of one step are contiguous) and the
    scratch is at most linear in the batch. Else None."""
    from .memory import scan_scratch_layout
    a = node.attrs
    if a["axis"] != 0:
        return None
    B = row_dim(node)
    if not isinstance(B, str):
        return None
    size = scan_scratch_layout(node)["size"]
    if any(syms.count(B) > 1 for syms in size.terms):
        return None
    return B


def split_scratch_size(node, B: str):
    """Scratch of the split recurrence: ceil(N / SPLIT_ROWS) units of the scratch one
    unit needs, bounded by a Poly linear in N."""
    from ..ir.types import Poly
    from .memory import scan_scratch_layout
    unit = scan_scratch_layout(node)["size"].substitute(B, SPLIT_ROWS)
    terms = dict(unit.terms)
    for syms, c in unit.terms.items():
        k = tuple(sorted((*syms, B)))
        terms[k] = terms.get(k, 0) + -(-c // SPLIT_ROWS)
    return Poly(terms), unit
