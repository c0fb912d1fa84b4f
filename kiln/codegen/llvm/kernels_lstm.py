"""The ``lstm_cell_packed`` kernel (kiln/ir/ops/lstm.py): an LSTM step's gate GEMM with
the gates as its tile epilogue.

The packed GEMM (kernels_gemm.gemm_packed_into, split across the pool by panels or
rows like any other) stores its rows of a tile -- per panel the pre-activations of all
four gates of ``nr / 4`` units, interleaved by blocks -- into a stack tile (MR rows,
GROUP panels) instead of memory; once per tile the epilogue adds the bias, applies
the activations to every unit block of the tile (independent chains for the
out-of-order core) and writes those units' c' and h' straight to the results. Per
step of a recurrence this replaces the GEMM's [N, 4*units] store, the gate kernel's
read of it and a second kernel (at batch 1 a serial one: the gates now run on the
threads that computed them). Measured (2 cores, interleaved, kiln's kernel counters):
batch 1 2-4% faster per call, batch 256 ~1% slower -- there the gates are as
math-bound in the epilogue as in their own kernel, and nothing but the traffic of
the pre-activations (in L2 either way) is saved.

With a ready-made input projection (the op's 6-operand form, kiln/ir/ops/lstm.py) the
kernel branches per call on ``ok``: the GEMM of h alone (A = the h columns of xh, B =
the panels' rows past x_width, ``gemm_packed_into(b_k=...)``), its accumulators loaded
from xw (``acc_init``) -- the same FMA chain per element as the whole GEMM, so either
branch gives the same bits. ``lstm_project`` is that GEMM's x part for all steps.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.ops.lstm import GATES
from ...ir.types import DType
from .emit import I32, I64, LLTYPE, vector_ptr
from .kernels import kernel, kernel_context
from .kernels_gemm import GROUP, MR, gemm_packed_into, gemm_packed_parallel, packed_gemm_node
from .scalar import SCALAR, VECTOR


#: activations computed on explicit vectors (two rows' unit blocks per vector: twice
#: the lanes of a block, a full AVX-512 register): the LSTM at batch 256 ran 7% faster
#: than with the scalar loop (in-process A/B); any other unary op takes the scalar
#: loop, which LLVM vectorizes over a block
@kernel("lstm_cell_packed")
def emit_lstm_cell_packed(module, name, node, symbols):
    kc = kernel_context(module, name, node, symbols)
    a = node.attrs
    n, block = a["n"], a["block"]
    units = n // GATES
    nr = node.inputs[1].type.shape[-1]
    dt = node.outputs[0].type.dtype
    act, ract = SCALAR[a["activation"]], SCALAR[a["recurrent_activation"]]

    def cell(b, z, c_prev, act, ract):
        """(c', h') of one step from the gates' pre-activations z = (i, f, c, o) and c,
        scalars or vectors alike (``act``/``ract``: value -> value)."""
        i_g, f_g, o_g = (ract(z[k]) for k in (0, 1, 3))
        c_new = b.fadd(b.fmul(f_g, c_prev), b.fmul(i_g, act(z[2])))
        return c_new, b.fmul(o_g, act(c_new))

    def emit(tc, ranges):
        h_ptr, c_out, xh, wp, bias, c_in = tc.args[:6]
        b = tc.b
        with b.goto_entry_block():
            tile = b.alloca(ll.ArrayType(LLTYPE[dt], MR * GROUP * nr), name="gates")
        tile_ptr = b.bitcast(tile, LLTYPE[dt].as_pointer())

        def slot(row, g):         # a panel's row of C in the tile (MR rows, GROUP panels in flight)
            return b.add(b.mul(b.srem(row, I64(MR)), I64(GROUP * nr)), I64(g * nr))

        def at(row, g):
            return b.gep(tile_ptr, [slot(row, g)], inbounds=True)

        def blocks(i, R, j0, G):
            """(tile offset of a unit block's gates in row r, first column, first unit) of
            every unit block of the G panels from column j0, for rows i..i+R."""
            out = []
            for g in range(G):
                for q in range(nr // (GATES * block)):
                    col = b.add(j0, I64(g * nr + q * GATES * block))
                    out.append((lambda r, g=g, q=q: b.add(slot(b.add(i, I64(r)), g), I64(q * GATES * block)),
                                col, b.sdiv(col, I64(GATES))))
            return out

        def sa(x):
            return act(b, module, [x], (dt,), dt, {})

        def sr(x):
            return ract(b, module, [x], (dt,), dt, {})

        def gates(i, R, j0, G):         # scalar code; LLVM vectorizes the loop over a block
            rows = [b.mul(b.add(i, I64(r)), I64(units)) for r in range(R)]
            for off, col, first in blocks(i, R, j0, G):
                with tc.loop(I64(block), name="u") as j:   # R independent rows per lane
                    zb = [tc.load(bias, b.add(b.add(col, I64(k * block)), j), dt) for k in range(GATES)]
                    for r, row in enumerate(rows):
                        z = [b.fadd(tc.load(tile_ptr, b.add(b.add(off(r), I64(k * block)), j), dt), zb[k])
                             for k in range(GATES)]
                        ui = b.add(b.add(row, first), j)
                        c_new, h_new = cell(b, z, tc.load(c_in, ui, dt), sa, sr)
                        tc.store(c_new, c_out, ui, dt)
                        tc.store(h_new, h_ptr, ui, dt)

        def vgates(i, R, j0, G):        # explicit vectors, two rows' blocks in one
            vt = ll.VectorType(LLTYPE[dt], block)
            lo, hi = (ll.Constant(ll.VectorType(I32, block), list(range(h * block, (h + 1) * block)))
                      for h in range(2))
            both = ll.Constant(ll.VectorType(I32, 2 * block), list(range(2 * block)))
            va, vr = (lambda x, f=VECTOR[name]: f(b, module, [x])
                      for name in (a["activation"], a["recurrent_activation"]))

            def vload(p, off):
                return b.load(vector_ptr(b, p, off, vt), align=dt.itemsize)

            def vstore(v, p, off):
                b.store(v, vector_ptr(b, p, off, vt), align=dt.itemsize)

            def cat(vs):
                return vs[0] if len(vs) == 1 else b.shuffle_vector(vs[0], vs[1], both)

            for off, col, first in blocks(i, R, j0, G):
                zb = [vload(bias, b.add(col, I64(k * block))) for k in range(GATES)]
                for r0 in range(0, R, 2):
                    rs = list(range(r0, min(R, r0 + 2)))
                    z = [b.fadd(cat([vload(tile_ptr, b.add(off(r), I64(k * block))) for r in rs]),
                                cat([zb[k]] * len(rs))) for k in range(GATES)]
                    ui = [b.add(b.mul(b.add(i, I64(r)), I64(units)), first) for r in rs]
                    c_new, h_new = cell(b, z, cat([vload(c_in, u_) for u_ in ui]), va, vr)
                    for h, u_ in enumerate(ui):
                        part = (lambda v: v) if len(ui) == 1 else \
                            (lambda v, m=(lo, hi)[h]: b.shuffle_vector(v, v, m))
                        vstore(part(c_new), c_out, u_)
                        vstore(part(h_new), h_ptr, u_)

        vector = (a["activation"] in VECTOR and a["recurrent_activation"] in VECTOR
                  and dt is DType.f32)
        epilogue = vgates if vector else gates
        if len(node.inputs) == 4:
            gemm_packed_into(tc, node, None, xh, wp, c_at=at, rows_epilogue=epilogue, **ranges)
            return
        xw, ok = tc.args[6:8]
        ready = b.icmp_unsigned("!=", tc.load(ok, I64(0), DType.bool), ll.Constant(ll.IntType(8), 0))
        with b.if_else(ready) as (projected, whole):
            with projected:      # the h part only, each sum starting from xw (its x part)
                xk = a["x_width"]
                gemm_packed_into(tc, h_part, None, b.gep(xh, [I64(xk)], inbounds=True), wp,
                                 c_at=at, rows_epilogue=epilogue, lda=I64(K), b_k=(xk, K),
                                 acc_init=lambda row, p: b.gep(xw, [b.add(b.mul(row, I64(n)),
                                                                          b.mul(p, I64(nr)))],
                                                               inbounds=True), **ranges)
            with whole:
                gemm_packed_into(tc, node, None, xh, wp, c_at=at, rows_epilogue=epilogue, **ranges)

    xh_t, wp_t = node.inputs[0].type, node.inputs[1].type
    K = xh_t.shape[1]
    if len(node.inputs) == 6:    # the GEMM of h alone: A = xh's last K - x_width columns
        h_part = packed_gemm_node(xh_t.with_shape((xh_t.shape[0], K - a["x_width"])),
                                  wp_t.with_shape((wp_t.shape[0], K - a["x_width"], nr)), n)
    gemm_packed_parallel(kc, node, emit)
    return kc.finish()


@kernel("lstm_project")
def emit_lstm_project(module, name, node, symbols):
    """xw = x @ W[:x_width] for every step at once (rows T*N), when N <= max_rows;
    ``ok`` says whether it ran. Split across the pool like any packed GEMM."""
    kc = kernel_context(module, name, node, symbols)
    a = node.attrs
    x_t, wp_t = (v.type for v in node.inputs)
    K, nr = wp_t.shape[1], wp_t.shape[2]
    gemm = packed_gemm_node(x_t, wp_t.with_shape((wp_t.shape[0], a["x_width"], nr)), a["n"])
    b = kc.b
    ok = b.icmp_signed("<=", kc.dim(x_t.shape[1]), I64(a["max_rows"]))
    kc.store(b.zext(ok, ll.IntType(8)), kc.args[1], I64(0), DType.bool)
    with b.if_then(ok):
        def emit(tc, ranges):
            xw, _, x, wp = tc.args
            gemm_packed_into(tc, gemm, xw, x, wp, b_k=(0, K), **ranges)
        gemm_packed_parallel(kc, gemm, emit)
    return kc.finish()
