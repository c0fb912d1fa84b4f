"""Winograd F(2x2, 3x3) convolution: a 3x3, stride-1 conv2d in 16 small GEMMs.

Each 2x2 block of output pixels (a *tile*) comes from a 4x4 block of input pixels d
(rows 2ty - top .. +4, columns 2tx - left .. +4; zero outside the image):

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (per channel pair, summed over C)

with the constant matrices below (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016). The 16 positions xi = (i, j) of the 4x4 transformed domain
are independent: M[xi] = V[xi] @ U[xi] is a [tiles, C] x [C, O] GEMM, so the 9
multiply-adds per (pixel, channel pair) of the direct conv become 16 / 4 = 4 -- 2.25x
fewer, with the transforms (additions only: B and A hold 0 and +-1) on the side.

``conv2d_winograd(x, up){n, pads, pool}``: x f32[N,H,W,C]; ``up`` the transformed
kernel U = G g G^T as [16, C, O], packed by ``pack_panels`` (batched panels
[16, ceil(O/nr), C, nr]). ``pool=[2, 2]``: then 2x2 max pooling (stride 2, a partial
last window dropped) -- a pooling window is exactly one tile, so the output transform
keeps the tile's maximum and the unpooled output never exists (tiles whose window
is dropped are not computed). The layout pass makes it of ``conv2d`` with a known 3x3
kernel, stride 1, no dilation, one group (inference; U is folded at compile time).
Rounding differs from the direct conv's (the transforms reorder the sums): the
reference here is the same algorithm in numpy, and tests bound the difference to the
direct conv.
"""
from __future__ import annotations

import numpy as np

from ..opdef import Attr, AttrKind, Kind, OpDef, OpTypeError, register
from ..types import TensorType
from .layout import unpack_panels

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def winograd_weights(w: np.ndarray) -> np.ndarray:
    """U = G g G^T of an HWIO kernel [3, 3, C, O], as [16, C, O] (float64 inside)."""
    if w.shape[:2] != (3, 3):
        raise ValueError(f"winograd_weights: expects a 3x3 kernel [3,3,C,O], got {w.shape}")
    u = np.einsum("ai,ijco,bj->abco", G, w.astype(np.float64), G)
    return u.reshape(16, *w.shape[2:]).astype(w.dtype)


def tiles(oh: int, ow: int) -> tuple[int, int]:
    return -(-oh // 2), -(-ow // 2)


@register
class Conv2DWinograd(OpDef):
    name = "conv2d_winograd"
    kind = Kind.OUT_FUSABLE
    family = "conv2d_winograd"
    num_inputs = 2
    attrs = (Attr("n", AttrKind.INT), Attr("pads", AttrKind.INTS, (0, 0, 0, 0)),
             Attr("pool", AttrKind.INTS, ()))

    def infer(self, x: TensorType, up: TensorType, *, n, pads, pool):
        if x.rank != 4 or up.rank != 4 or up.shape[0] != 16:
            raise OpTypeError(f"conv2d_winograd: expects NHWC input and 16 sets of packed "
                              f"panels [16, P, C, nr], got {x}, {up}")
        _, h, w, c = x.shape
        _, npanels, k, nr = up.shape
        if k != c:
            raise OpTypeError(f"conv2d_winograd: the panels' depth {k} is not the input's "
                              f"{c} channels ({x})")
        if not (npanels - 1) * nr < n <= npanels * nr:
            raise OpTypeError(f"conv2d_winograd: n={n} does not fit {npanels} panels of {nr}")
        if len(pads) != 4 or min(pads) < 0:
            raise OpTypeError(f"conv2d_winograd: pads must be 4 values >= 0, got {list(pads)}")
        if not isinstance(h, int) or not isinstance(w, int):
            raise OpTypeError(f"conv2d_winograd: expects static image sizes, got {x}")
        oh, ow = h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2
        if oh < 1 or ow < 1:
            raise OpTypeError(f"conv2d_winograd: a 3x3 window does not fit {x} padded by "
                              f"{list(pads)}")
        if pool:
            if tuple(pool) != (2, 2):
                raise OpTypeError(f"conv2d_winograd: pool must be [2, 2] (one tile), got {list(pool)}")
            if oh < 2 or ow < 2:
                raise OpTypeError(f"conv2d_winograd: a 2x2 pool does not fit the {oh}x{ow} output")
            oh, ow = oh // 2, ow // 2
        return TensorType((x.shape[0], oh, ow, n), x.dtype)

    def reference(self, x, up, *, n, pads, pool):
        N, H, W, C = x.shape
        u = np.stack([unpack_panels(p, n) for p in up])            # [16, C, n]
        oh, ow = H + pads[0] + pads[1] - 2, W + pads[2] + pads[3] - 2
        th, tw = tiles(oh, ow)
        xp = np.zeros((N, 2 * th + 2, 2 * tw + 2, C), x.dtype)     # room for every tile
        rows, cols = min(H, 2 * th + 2 - pads[0]), min(W, 2 * tw + 2 - pads[2])
        xp[:, pads[0]:pads[0] + rows, pads[2]:pads[2] + cols] = x[:, :rows, :cols]
        idx_y = 2 * np.arange(th)[:, None] + np.arange(4)           # [th, 4]
        idx_x = 2 * np.arange(tw)[:, None] + np.arange(4)           # [tw, 4]
        d = xp[:, idx_y][:, :, :, idx_x]                            # [N, th, 4, tw, 4, C]
        v = np.einsum("ia,nyaxbc,jb->ijnyxc", BT, d, BT).reshape(16, -1, C)
        m = np.matmul(v, u).reshape(4, 4, N, th, tw, n)              # [16, tiles, n]
        y = np.einsum("ai,ijnyxo,bj->nyaxbo", AT, m, AT)             # [N, th, 2, tw, 2, n]
        if pool:     # the tile's maximum (NaN wins, as max_pool2d), whole windows only
            return y[:, :oh // 2, :, :ow // 2].max(axis=(2, 4)).astype(x.dtype)
        y = y.reshape(N, 2 * th, 2 * tw, n)
        return np.ascontiguousarray(y[:, :oh, :ow]).astype(x.dtype)
