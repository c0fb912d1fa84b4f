"""Masters of *point* kernels (kernels.py): ops whose value at one index of their
result a thread computes by itself -- gathers over a window or a permutation. Each
``AT_POINT[family](src, group, node, idx)`` emits the lines computing the value at
the multi-index ``idx`` (names of locals) and returns the expression holding it.
The group's elementwise epilogue, if any, is applied to it by the caller.
"""
from __future__ import annotations

from ..llvm.emit import contiguous_strides
from .scalar import literal
from .source import aff, offset


def _at_transpose(src, g, n, idx):
    x = n.inputs[0].type
    own = contiguous_strides(x.shape)
    # output index k walks input axis perm[k]
    off = offset(idx, [own[p] for p in n.attrs["perm"]])
    src(f"m_ = {g.arg[n.inputs[0]]}[{off}]")
    return "m_"


def _at_conv2d(src, g, n, idx):
    """Direct gather convolution: the depthwise case (one input channel per group; every
    other conv2d is an implicit GEMM, kernels_gemm.py)."""
    x_t, w_t = n.inputs[0].type, n.inputs[1].type
    _, H, W, C = x_t.shape
    kh, kw, cg, O = w_t.shape
    a = n.attrs
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, _, pl, _ = a["pads"]
    og = O // a["groups"]
    x, w = g.arg[n.inputs[0]], g.arg[n.inputs[1]]
    nb, y, xx, o = idx
    src(f"m_ = {literal(0, n.outputs[0].type.dtype)}")
    src(f"c0_ = ({o} // {og}) * {cg}")
    src(f"for ki_ in range({kh}):")
    src.indent()
    src(f"yy_ = {y}*{sh} + ki_*{dh} - {pt}")
    src(f"if 0 <= yy_ < {H}:")
    src.indent()
    src(f"for kj_ in range({kw}):")
    src.indent()
    src(f"xx_ = {xx}*{sw} + kj_*{dw} - {pl}")
    src(f"if 0 <= xx_ < {W}:")
    src.indent()
    src(f"xb_ = (({nb}*{H} + yy_)*{W} + xx_)*{C} + c0_")
    src(f"wb_ = ((ki_*{kw} + kj_)*{cg})*{O} + {o}")
    src(f"for c_ in range({cg}):")
    src.indent()
    src(f"m_ += {x}[xb_ + c_] * {w}[wb_ + c_*{O}]")
    src.depth -= 5
    return "m_"


def _at_pool(src, g, n, idx):
    x_t = n.inputs[0].type
    _, H, W, C = x_t.shape
    a = n.attrs
    (kh, kw), (sh, sw), (pt, _, pl, _) = a["window"], a["strides"], a["pads"]
    dt = x_t.dtype
    x = g.arg[n.inputs[0]]
    nb, y, xx, c = idx
    is_max = n.op.name == "max_pool2d"
    src(f"m_ = {literal(float('-inf') if is_max else 0, dt)}")
    src("cnt_ = 0")
    src(f"for ki_ in range({kh}):")
    src.indent()
    src(f"yy_ = {y}*{sh} + ki_ - {pt}")
    src(f"if 0 <= yy_ < {H}:")
    src.indent()
    src(f"for kj_ in range({kw}):")
    src.indent()
    src(f"xx_ = {xx}*{sw} + kj_ - {pl}")
    src(f"if 0 <= xx_ < {W}:")
    src.indent()
    src(f"e_ = {x}[(({nb}*{H} + yy_)*{W} + xx_)*{C} + {c}]")
    if is_max:
        src("if e_ > m_ or e_ != e_:")
        src("    m_ = e_")
    else:
        src("m_ += e_")
        src("cnt_ += 1")
    src.depth -= 4
    if not is_max:
        src("m_ = m_ / cnt_")
    return "m_"


def _at_conv2d_backprop_kernel(src, g, n, idx):
    """dw[i,j,c,o] = sum over n,y,x of xpad[n, y*sh + i*dh, x*sw + j*dw, g*cg + c] * dy[n,y,x,o]
    (one thread per kernel element, looping over the batch): the depthwise case only,
    whose GEMM would be a column wide; the others are split-K GEMMs (kernels_gemm.py)."""
    x_t, dy_t = n.inputs[0].type, n.inputs[1].type
    NB, H, W, C = x_t.shape
    _, Ho, Wo, O = dy_t.shape
    a = n.attrs
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, _, pl, _ = a["pads"]
    cg = C // a["groups"]
    og = O // a["groups"]
    x, dy = g.arg[n.inputs[0]], g.arg[n.inputs[1]]
    i, j, c, o = idx
    src(f"m_ = {literal(0, n.outputs[0].type.dtype)}")
    src(f"cc_ = ({o} // {og}) * {cg} + {c}")
    src(f"for nb_ in range({aff(NB)}):")
    src.indent()
    src(f"for y_ in range({Ho}):")
    src.indent()
    src(f"yy_ = y_*{sh} + {i}*{dh} - {pt}")
    src(f"if 0 <= yy_ < {H}:")
    src.indent()
    src(f"for x_ in range({Wo}):")
    src.indent()
    src(f"xx_ = x_*{sw} + {j}*{dw} - {pl}")
    src(f"if 0 <= xx_ < {W}:")
    src(f"    m_ += {x}[((nb_*{H} + yy_)*{W} + xx_)*{C} + cc_] * {dy}[((nb_*{Ho} + y_)*{Wo} + x_)*{O} + {o}]")
    src.depth -= 4
    return "m_"


def _windows_over(src, Y, X, kh, kw, sh, sw, pt, pl, Ho, Wo):
    """Open loops over the pooling windows (oy_, ox_) that cover input (Y, X); returns
    how many levels were opened."""
    src(f"for ki_ in range({kh}):")
    src.indent()
    src(f"ty_ = {Y} + {pt} - ki_")
    src(f"if ty_ >= 0 and ty_ % {sh} == 0 and ty_ // {sh} < {Ho}:")
    src.indent()
    src(f"oy_ = ty_ // {sh}")
    src(f"for kj_ in range({kw}):")
    src.indent()
    src(f"tx_ = {X} + {pl} - kj_")
    src(f"if tx_ >= 0 and tx_ % {sw} == 0 and tx_ // {sw} < {Wo}:")
    src.indent()
    src(f"ox_ = tx_ // {sw}")
    return 4


def _at_max_pool2d_grad(src, g, n, idx):
    """Per input element: the dy of every window covering it whose FIRST maximum
    (row-major; the first NaN if any; padding never wins) is this element."""
    x_t, dy_t = n.inputs[0].type, n.inputs[1].type
    _, H, W, C = x_t.shape
    _, Ho, Wo, _ = dy_t.shape
    a = n.attrs
    (kh, kw), (sh, sw), (pt, _, pl, _) = a["window"], a["strides"], a["pads"]
    x, dy = g.arg[n.inputs[0]], g.arg[n.inputs[1]]
    nb, Y, X, c = idx
    dt = n.outputs[0].type.dtype
    src(f"m_ = {literal(0, dt)}")
    depth = _windows_over(src, Y, X, kh, kw, sh, sw, pt, pl, Ho, Wo)
    src(f"best_ = {literal(0, dt)}")
    src("by_ = -1")
    src("bx_ = -1")
    src(f"for wi_ in range({kh}):")
    src(f"    yy_ = oy_*{sh} - {pt} + wi_")
    src(f"    for wj_ in range({kw}):")
    src(f"        xx_ = ox_*{sw} - {pl} + wj_")
    src(f"        if 0 <= yy_ < {H} and 0 <= xx_ < {W}:")
    src(f"            p_ = {x}[(({nb}*{H} + yy_)*{W} + xx_)*{C} + {c}]")
    src("            if by_ < 0 or p_ > best_ or (p_ != p_ and best_ == best_):")
    src("                best_ = p_")
    src("                by_ = yy_")
    src("                bx_ = xx_")
    src(f"if by_ == {Y} and bx_ == {X}:")
    src(f"    m_ += {dy}[(({nb}*{Ho} + oy_)*{Wo} + ox_)*{C} + {c}]")
    src.depth -= depth
    return "m_"


def _at_avg_pool2d_grad(src, g, n, idx):
    """Per input element: sum of dy / (elements the window covers) over covering windows."""
    dy_t = n.inputs[0].type
    _, Ho, Wo, C = dy_t.shape
    a = n.attrs
    (kh, kw), (sh, sw), (pt, _, pl, _), (H, W) = a["window"], a["strides"], a["pads"], a["size"]
    dy = g.arg[n.inputs[0]]
    nb, Y, X, c = idx
    src(f"m_ = {literal(0, n.outputs[0].type.dtype)}")
    depth = _windows_over(src, Y, X, kh, kw, sh, sw, pt, pl, Ho, Wo)
    src(f"y0_ = oy_*{sh} - {pt}")
    src(f"x0_ = ox_*{sw} - {pl}")
    src(f"cnt_ = (min(y0_ + {kh}, {H}) - max(y0_, 0)) * (min(x0_ + {kw}, {W}) - max(x0_, 0))")
    src(f"m_ += {dy}[(({nb}*{Ho} + oy_)*{Wo} + ox_)*{C} + {c}] / cnt_")
    src.depth -= depth
    return "m_"


def _at_slice(src, g, n, idx):
    from ...ir.ops.data import slice_ranges
    x = n.inputs[0].type
    a = n.attrs
    rs = slice_ranges(x, a["axes"], a["begin"], a["end"], a["steps"])
    src_idx = [f"({rs[k].start} + {i}*{rs[k].step})" if k in rs else i for k, i in enumerate(idx)]
    src(f"m_ = {g.arg[n.inputs[0]]}[{offset(src_idx, contiguous_strides(x.shape))}]")
    return "m_"


def _at_pad(src, g, n, idx):
    x = n.inputs[0].type
    pads = n.attrs["pads"]
    src_idx, conds = [], []
    for k, (i, d) in enumerate(zip(idx, x.shape)):
        lo = pads[2 * k]
        if lo or pads[2 * k + 1]:
            src_idx.append(f"({i} - {lo})")
            conds.append(f"0 <= {i} - {lo} < {d}")
        else:
            src_idx.append(i)
    src(f"m_ = {literal(n.attrs['value'], x.dtype)}")
    src(f"if {' and '.join(conds) or 'True'}:")
    src(f"    m_ = {g.arg[n.inputs[0]]}[{offset(src_idx, contiguous_strides(x.shape))}]")
    return "m_"


def _at_concat(src, g, n, idx):
    from ...ir.opdef import normalize_axis
    ax = normalize_axis("concat", n.attrs["axis"], n.outputs[0].type.rank)
    start = 0
    for k, v in enumerate(n.inputs):
        size = v.type.shape[ax]
        src_idx = list(idx)
        src_idx[ax] = f"({idx[ax]} - {start})"
        kw = "if" if k == 0 else "elif"
        test = f"{idx[ax]} < {start + size}" if k < len(n.inputs) - 1 else "True"
        src(f"{kw} {test}:" if kw == "if" or test != "True" else "else:")
        src(f"    m_ = {g.arg[v]}[{offset(src_idx, contiguous_strides(v.type.shape))}]")
        start += size
    return "m_"


def _at_gather(src, g, n, idx):
    """out[a..., i..., b...] = params[a..., indices[i...], b...]; out-of-range -> 0."""
    from ...ir.opdef import normalize_axis
    p_t, i_t = n.inputs[0].type, n.inputs[1].type
    ax = normalize_axis("gather", n.attrs["axis"], p_t.rank)
    a, i, b = idx[:ax], idx[ax:ax + i_t.rank], idx[ax + i_t.rank:]
    src(f"j_ = {g.arg[n.inputs[1]]}[{offset(i, contiguous_strides(i_t.shape))}]")
    src(f"m_ = {literal(0, p_t.dtype)}")
    src(f"if 0 <= j_ < {aff(p_t.shape[ax])}:")
    src(f"    m_ = {g.arg[n.inputs[0]]}[{offset([*a, 'j_', *b], contiguous_strides(p_t.shape))}]")
    return "m_"


def _at_argmax(src, g, n, idx):
    """The first largest element along the axis (the first NaN if any), one thread per output."""
    from ...ir.opdef import normalize_axis
    x = n.inputs[0].type
    ax = normalize_axis("argmax", n.attrs["axis"], x.rank)
    kept = list(idx)
    if n.attrs["keepdims"]:
        kept.pop(ax)
    full = kept[:ax] + ["r_"] + kept[ax:]
    load = f"{g.arg[n.inputs[0]]}[{offset(full, contiguous_strides(x.shape))}]"
    src("m_ = 0")
    src("r_ = 0")
    src(f"best_ = {load}")
    src(f"for r_ in range(1, {aff(x.shape[ax])}):")
    src(f"    e_ = {load}")
    src("    if best_ == best_ and (e_ > best_ or e_ != e_):")
    src("        best_ = e_")
    src("        m_ = r_")
    return "m_"


def _at_random_uniform(src, g, n, idx):
    """SplitMix64 of (seed, counter, flat index), bit-identical to the numpy reference
    (kiln/ir/ops/random.py). Wrapping 64-bit products are written ``uint64(int(a) *
    int(b))``: on the GPU both operands are 64-bit integers of one type, so the product
    wraps; under the simulator ``uint64`` masks a Python int to 64 bits."""
    from ...ir.ops.random import GOLDEN, MIX1, MIX2
    out = n.outputs[0].type
    seed = n.attrs["seed"]

    def mix(z):
        src(f"z_ = {z}")
        src(f"z_ = uint64(int(z_ ^ (z_ >> uint64(30))) * int(uint64({MIX1})))")
        src(f"z_ = uint64(int(z_ ^ (z_ >> uint64(27))) * int(uint64({MIX2})))")
        src("z_ = z_ ^ (z_ >> uint64(31))")

    flat = offset(idx, contiguous_strides(out.shape))
    mix(f"uint64(int(uint64({seed})) + int(uint64({GOLDEN})) * (int({g.arg[n.inputs[0]]}[0]) + 1))")
    src("key_ = z_")
    mix(f"uint64(int(key_) + int(uint64({GOLDEN})) * ({flat} + 1))")
    src(f"m_ = {'float32' if out.dtype.itemsize == 4 else 'float64'}"
        f"(float64(z_ >> uint64(40)) * {2.0 ** -24!r})")
    return "m_"


AT_POINT = {"random_uniform": _at_random_uniform, "slice": _at_slice, "pad": _at_pad, "concat": _at_concat, "gather": _at_gather,
            "argmax": _at_argmax,
"transpose": _at_transpose, "conv2d": _at_conv2d, "pool2d": _at_pool,
            "conv2d_backprop_kernel": _at_conv2d_backprop_kernel,
            "max_pool2d_grad": _at_max_pool2d_grad, "avg_pool2d_grad": _at_avg_pool2d_grad}


