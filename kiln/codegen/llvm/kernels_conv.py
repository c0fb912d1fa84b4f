"""The rows of a convolution's implicit GEMM (kernels_gemm.py runs the GEMM): output
pixels as rows of A, the kernel window (i, j, c) as its depth k, read straight from
the NHWC input -- no im2col copy. A tap in the padding reads a run of zeros instead.

Two shapes of k loop: with many input channels, the taps unrolled, each a loop over
its contiguous channel run; with a few (an image's first conv, C = 3: K = 27), the
taps in a loop and the channels unrolled inside it.
"""
from __future__ import annotations

import llvmlite.ir as ll

from ...ir.types import Affine
from .emit import I64, LLTYPE, ptr

UNROLL_C = 4  # a conv with at most this many input channels has its channel loop unrolled
PREFETCH = True   # hint the next row block's input (strided 1x1 convs: see wants_prefetch)


def _zeros(kc, n: int, dt):
    """A private constant of ``n`` zeros (what a padded window reads)."""
    name = f"kiln_zeros{n}_{dt.name}"
    m = kc.module
    gv = m.globals.get(name)
    if gv is None:
        arr = ll.ArrayType(LLTYPE[dt], n)
        gv = ll.GlobalVariable(m, arr, name)
        gv.global_constant = True
        gv.linkage = "private"
        gv.align = 64
        gv.initializer = ll.Constant(arr, None)
    return kc.b.bitcast(gv, ptr(dt))


class ConvRows:
    """Rows of an implicit GEMM for a convolution: row = output pixel (n, y, x), k =
    (i, j, c) over the window, A[row, k] = x[n, y*sh + i*dh - top, x*sw + j*dw - left, c]
    or 0 in the padding. Bounds are checked once per (row, i, j); the c loop reads a
    contiguous channel run (a few channels: see ``_tap_loop``)."""

    def __init__(self, kc, x_ptr, x_t, out_t, attrs):
        self.kc, self.x_ptr, self.dt = kc, x_ptr, x_t.dtype
        _, self.H, self.W, self.C = x_t.shape
        _, self.Ho, self.Wo, _ = out_t.shape
        self.kh, self.kw = attrs["kernel"]
        self.sh, self.sw = attrs["strides"]
        self.dh, self.dw = attrs["dilations"]
        self.top, _, self.left, _ = attrs["pads"]
        self.K = I64(self.kh * self.kw * self.C)
        self.rows = kc.affine(Affine.product(out_t.shape[:-1]))
        self.padded = any(attrs["pads"])
        # conv + max pool (``pool``): a row is a pooled pixel; the GEMM runs once per
        # position (dy, dx) in its window (``sub``, set before each k loop) and keeps the max
        self.pool = tuple(attrs.get("pool") or ())
        self.sub = None

    def k_loop(self, row_ids, body):
        kc, b = self.kc, self.kc.b
        pix = []
        for r in row_ids:   # (image base offset, y origin, x origin) of each row's window
            ox = b.srem(r, I64(self.Wo))
            t = b.sdiv(r, I64(self.Wo))
            oy = b.srem(t, I64(self.Ho))
            n = b.sdiv(t, I64(self.Ho))
            if self.pool:   # the conv pixel at (dy, dx) of the pooled pixel's window
                oy = b.add(b.mul(oy, I64(self.pool[0])), self.sub[0])
                ox = b.add(b.mul(ox, I64(self.pool[1])), self.sub[1])
            pix.append((b.mul(n, I64(self.H * self.W * self.C)),
                        b.sub(b.mul(oy, I64(self.sh)), I64(self.top)),
                        b.sub(b.mul(ox, I64(self.sw)), I64(self.left))))
        # a tap in the padding reads from a run of zeros instead (select the address,
        # not the value: the load stays a broadcast from memory, no shuffle per element)
        zeros = _zeros(kc, self.C, self.dt) if self.padded else None
        if self.C <= UNROLL_C:
            self._tap_loop(pix, zeros, body)
            return
        # the taps in a loop around the channel loop (the same k order as unrolled taps,
        # so the same sums; a ninth of the IR for a 3x3 window, which LLVM compiles faster)
        with kc.loop(I64(self.kh * self.kw), name="tap") as q:
            rowp = self._tap_rows(pix, zeros, q)
            k0 = b.mul(q, I64(self.C))
            with kc.loop(I64(self.C), name="c") as c:
                body(b.add(c, k0), [kc.load(p, c, self.dt) for p in rowp])

    def _tap_rows(self, pix, zeros, q):
        """Each row's pointer to its window's channels at tap q (zeros in the padding)."""
        b = self.kc.b
        i, j = b.udiv(q, I64(self.kw)), b.urem(q, I64(self.kw))
        di, dj = b.mul(i, I64(self.dh)), b.mul(j, I64(self.dw))
        off = b.mul(b.add(b.mul(di, I64(self.W)), dj), I64(self.C))
        rowp = []
        for base, y0, x0 in pix:
            start = b.add(b.add(base, b.mul(b.add(b.mul(y0, I64(self.W)), x0), I64(self.C))), off)
            p = b.gep(self.x_ptr, [start])
            if self.padded:
                y, x = b.add(y0, di), b.add(x0, dj)
                ok = b.and_(b.icmp_unsigned("<", y, I64(self.H)), b.icmp_unsigned("<", x, I64(self.W)))
                p = b.select(ok, p, zeros)
            rowp.append(p)
        return rowp

    def wants_prefetch(self) -> bool:
        """Windows with gaps between them (a strided 1x1 projection): the hardware
        prefetcher misses that gapped walk over x, which at a large batch comes from
        memory (~10% on the ResNet's 32->64 projection at batch 256). Where windows
        touch or overlap (3x3, stride 1 or 2) it keeps up, and hints only cost
        instructions."""
        return PREFETCH and not self.pool and (self.kw - 1) * self.dw + 1 < self.sw

    def prefetch(self, r, count):
        """Hint the input under the windows of rows r .. r+count into the cache: the
        next row block's, while this one computes. Each window's run of x per tap
        row; the rows are taken to lie on one output row (a block that wraps gets
        part of its input hinted); a window's first 8 lines at most (the hardware
        follows a longer run). A hint outside x is harmless."""
        kc, b = self.kc, self.kc.b
        ox = b.srem(r, I64(self.Wo))
        t = b.sdiv(r, I64(self.Wo))
        oy = b.srem(t, I64(self.Ho))
        n = b.sdiv(t, I64(self.Ho))
        y0 = b.sub(b.mul(oy, I64(self.sh)), I64(self.top))
        x0 = b.sub(b.mul(ox, I64(self.sw)), I64(self.left))
        pixel = self.C * self.dt.itemsize
        size = min(((self.kw - 1) * self.dw + 1) * pixel, 512)   # one window's run, in bytes
        i8p = ll.IntType(8).as_pointer()
        i32 = ll.IntType(32)
        fn = kc.module.globals.get("llvm.prefetch.p0i8") or ll.Function(
            kc.module, ll.FunctionType(ll.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
        base = b.mul(n, I64(self.H * self.W * self.C))
        for i in range(self.kh):
            y = b.add(y0, I64(i * self.dh))
            start = b.add(base, b.mul(b.add(b.mul(y, I64(self.W)), x0), I64(self.C)))
            p = b.bitcast(b.gep(self.x_ptr, [start]), i8p)
            for q in range(count):
                off = q * self.sw * pixel
                for line in [*range(off, off + size - 1, 64), off + size - 1]:   # (unaligned)
                    b.call(fn, [b.gep(p, [I64(line)]), i32(0), i32(3), i32(1)])   # read, keep, data

    def _tap_loop(self, pix, zeros, body):
        """A few channels (an image's first conv): the taps in a loop, the channels
        unrolled inside it. Unrolled taps with unrolled channels -- one straight run
        of kh*kw*C steps (27 for a 3x3 RGB stem) -- let LLVM hoist every B vector out
        of the row loop and schedule the broadcasts far from their FMAs: the tile
        spilled to the stack on every step (the ResNet stem: ~30 GFLOP/s on one
        core). In a loop, the MR x NR accumulators stay in registers: ~2.5-3x faster."""
        kc, b = self.kc, self.kc.b
        C = self.C
        with kc.loop(I64(self.kh * self.kw), name="tap") as q:
            rowp = self._tap_rows(pix, zeros, q)
            k0 = b.mul(q, I64(C))
            for c in range(C):
                body(b.add(k0, I64(c)), [kc.load(p, I64(c), self.dt) for p in rowp])
