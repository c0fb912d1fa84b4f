"""Kernels for data movement (concat, slice, pad, gather) and argmax.

concat, slice and pad are strided copies: a loop nest over the copied region with
one stride vector for the source and one for the destination, plus a base offset
(where the region starts). where and broadcast_to go through the elementwise family.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.opdef import normalize_axis
from ...ir.ops.data import slice_ranges
from ...ir.types import DType
from .emit import I64, LLTYPE, collapse, const, contiguous_strides, strided_nest
from .kernels import kernel, kernel_context


def strided_copy(kc, shape, dst, dst_strides, dst_base, src, src_strides, src_base, dt: DType):
    """dst[dst_base + sum(i*ds)] = src[src_base + sum(i*ss)] over ``shape``."""
    b = kc.b
    shape, (ds, ss) = collapse(shape, dst_strides, src_strides)

    def body(offs):
        v = kc.load(src, b.add(src_base, offs[1], flags=["nsw"]), dt)
        kc.store(v, dst, b.add(dst_base, offs[0], flags=["nsw"]), dt)

    strided_nest(kc, shape, [ds, ss], body)


def _offset(kc, terms) -> ll.Value:
    """sum of start * stride (ints times Affine strides) as an i64."""
    acc = I64(0)
    for start, stride in terms:
        if start:
            acc = kc.b.add(acc, kc.affine(stride * start), flags=["nsw"])
    return acc


@kernel("concat")
def emit_concat(module, name, node, symbols):
    """Copy each operand into its band of the output along ``axis``."""
    kc = kernel_context(module, name, node, symbols)
    out_t = node.outputs[0].type
    ax = normalize_axis("concat", node.attrs["axis"], out_t.rank)
    out_strides = contiguous_strides(out_t.shape)
    start = 0
    for src, v in zip(kc.args[1:], node.inputs):
        strided_copy(kc, v.type.shape, kc.args[0], out_strides, _offset(kc, [(start, out_strides[ax])]),
                     src, contiguous_strides(v.type.shape), I64(0), out_t.dtype)
        start += v.type.shape[ax]
    return kc.finish()


@kernel("slice")
def emit_slice(module, name, node, symbols):
    """out[i] = x[start + i*step] along sliced axes (negative steps walk backwards)."""
    kc = kernel_context(module, name, node, symbols)
    x_t, out_t = node.inputs[0].type, node.outputs[0].type
    a = node.attrs
    ranges = slice_ranges(x_t, a["axes"], a["begin"], a["end"], a["steps"])
    own = contiguous_strides(x_t.shape)
    src_strides = [own[k] * ranges[k].step if k in ranges else own[k] for k in range(x_t.rank)]
    base = _offset(kc, [(r.start, own[k]) for k, r in ranges.items() if len(r)])
    strided_copy(kc, out_t.shape, kc.args[0], contiguous_strides(out_t.shape), I64(0),
                 kc.args[1], src_strides, base, x_t.dtype)
    return kc.finish()


@kernel("pad")
def emit_pad(module, name, node, symbols):
    """Fill the output with the pad value, then copy the operand into its interior."""
    kc = kernel_context(module, name, node, symbols)
    x_t, out_t = node.inputs[0].type, node.outputs[0].type
    dt = x_t.dtype
    pads, value = node.attrs["pads"], node.attrs["value"]
    fill = const(dt, value if dt.is_float else (int(value != 0) if dt is DType.bool else int(value)))
    with kc.loop(kc.numel(out_t.shape), name="fill") as i:
        kc.store(fill, kc.args[0], i, dt)
    out_strides = contiguous_strides(out_t.shape)
    base = _offset(kc, [(pads[2 * k], out_strides[k]) for k in range(x_t.rank)])
    strided_copy(kc, x_t.shape, kc.args[0], out_strides, base,
                 kc.args[1], contiguous_strides(x_t.shape), I64(0), dt)
    return kc.finish()


#: gathers copying at least this many elements go to the thread pool
GATHER_MIN_WORK = 1 << 15


@kernel("gather")
def emit_gather(module, name, node, symbols):
    """For every outer index o and index position t, copy the slice params[o, idx[t], :]
    to out[o, t, :]; an out-of-range index (< 0 or >= the axis size) writes zeros.
    The (o, t) pairs are split across the thread pool."""
    kc = kernel_context(module, name, node, symbols)
    p_t, i_t = node.inputs[0].type, node.inputs[1].type
    dt = p_t.dtype
    ax = normalize_axis("gather", node.attrs["axis"], p_t.rank)

    def task(tc, lo, hi):
        b = tc.b
        out_ptr, p_ptr, i_ptr = tc.args
        size = tc.dim(p_t.shape[ax])
        inner, count = tc.numel(p_t.shape[ax + 1:]), tc.numel(i_t.shape)
        with tc.loop(hi, start=lo, name="u") as u:
            o, t = b.sdiv(u, count), b.srem(u, count)
            idx = tc.load(i_ptr, t, i_t.dtype)
            if i_t.dtype is not DType.i64:
                idx = b.sext(idx, I64)
            dst = b.mul(u, inner)
            with b.if_else(b.icmp_unsigned("<", idx, size)) as (inside, outside):
                with inside:
                    src = b.mul(b.add(b.mul(o, size), idx), inner)
                    with tc.loop(inner, name="j") as j:
                        tc.store(tc.load(p_ptr, b.add(src, j), dt), out_ptr, b.add(dst, j), dt)
                with outside:
                    with tc.loop(inner, name="z") as j:
                        tc.store(const(dt, 0), out_ptr, b.add(dst, j), dt)

    units = kc.b.mul(kc.numel(p_t.shape[:ax]), kc.numel(i_t.shape))
    kc.parallel(units, task, work=kc.b.mul(units, kc.numel(p_t.shape[ax + 1:])), min_work=GATHER_MIN_WORK)
    return kc.finish()


@kernel("argmax")
def emit_argmax(module, name, node, symbols):
    """Per slice along ``axis``: keep the best value and its index; replace it when a
    later element is greater, or is the first NaN (numpy.argmax)."""
    kc = kernel_context(module, name, node, symbols)
    b = kc.b
    x_t = node.inputs[0].type
    dt = x_t.dtype
    ax = normalize_axis("argmax", node.attrs["axis"], x_t.rank)
    outer, r = kc.numel(x_t.shape[:ax]), kc.dim(x_t.shape[ax])
    inner = kc.numel(x_t.shape[ax + 1:])
    out_ptr, in_ptr = kc.args
    with b.goto_entry_block():
        best_slot = b.alloca(LLTYPE[dt])
        idx_slot = b.alloca(I64)
    with kc.loop(outer, name="o") as o:
        with kc.loop(inner, name="j") as j:
            base = b.add(b.mul(o, b.mul(r, inner)), j)
            b.store(kc.load(in_ptr, base, dt), best_slot)
            b.store(I64(0), idx_slot)
            with kc.loop(r, start=I64(1), name="k") as k:
                v = kc.load(in_ptr, b.add(base, b.mul(k, inner)), dt)
                best = b.load(best_slot)
                if dt.is_float:
                    better = b.and_(b.fcmp_ordered("ord", best, best), b.fcmp_unordered(">", v, best))
                else:
                    better = b.icmp_signed(">", v, best)
                b.store(b.select(better, v, best), best_slot)
                b.store(b.select(better, k, b.load(idx_slot)), idx_slot)
            kc.store(b.load(idx_slot), out_ptr, b.add(b.mul(o, inner), j), DType.i64)
    return kc.finish()

