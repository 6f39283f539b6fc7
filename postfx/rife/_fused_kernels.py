"""Triton kernels of `postfx.rife.fused` (imported only when the fused path runs; needs triton).

Layouts (all NHWC, one record per pixel):
- features F: 8 × fp16 = RGB, 4 Head features, 0.
- FLOW: 4 × fp32, the running flow (frame 0 x, y, frame 1 x, y) in pixels.
- MF: 16 × fp16, the last block's upsampled output as it is (4 flow-delta channels, unused here,
  then mask logit, 8 features, 3 unused).
- block input: [F0 sampled (with t in place of its 0 channel), F1 sampled, flow/s, mask,
  features, 0, 0, 0]: 16 channels for the first block (no flow yet), 32 after.  `fused.py`
  permutes each block's first conv to this order.
Pixel indices are int32 (B·H·W < 2³¹); pointer offsets are widened to int64.
"""

# No `from __future__ import annotations` here: Triton reads `tl.constexpr` annotations as objects.
import triton
import triton.language as tl


@triton.jit
def _sample8(src, n, yf, xf, H, W, c8, valid):
    """Bilinear, border-clamped sample of 8 fp16 channels of NHWC `src` at (yf, xf) -> [BLOCK, 8] fp32."""
    xf = tl.minimum(tl.maximum(xf, 0.0), W - 1.0)
    yf = tl.minimum(tl.maximum(yf, 0.0), H - 1.0)
    x0f = tl.floor(xf)
    y0f = tl.floor(yf)
    wx = (xf - x0f)[:, None]
    wy = (yf - y0f)[:, None]
    x0 = x0f.to(tl.int32)
    y0 = y0f.to(tl.int32)
    x1 = tl.minimum(x0 + 1, W - 1)
    y1 = tl.minimum(y0 + 1, H - 1)
    r0 = (n * H + y0) * W
    r1 = (n * H + y1) * W
    m = valid[:, None]
    c = c8[None, :]
    v00 = tl.load(src + (r0 + x0).to(tl.int64)[:, None] * 8 + c, mask=m, other=0.0).to(tl.float32)
    v01 = tl.load(src + (r0 + x1).to(tl.int64)[:, None] * 8 + c, mask=m, other=0.0).to(tl.float32)
    v10 = tl.load(src + (r1 + x0).to(tl.int64)[:, None] * 8 + c, mask=m, other=0.0).to(tl.float32)
    v11 = tl.load(src + (r1 + x1).to(tl.int64)[:, None] * 8 + c, mask=m, other=0.0).to(tl.float32)
    top = v00 + (v01 - v00) * wx
    bot = v10 + (v11 - v10) * wx
    return top + (bot - top) * wy


@triton.jit
def block_input(F0, F1, FLOW, MF, T, OUT, total, H, W, h, w, step, off, inv_s,
                HAS_FLOW: tl.constexpr, NSUB: tl.constexpr, C_OUT: tl.constexpr, BLOCK: tl.constexpr):
    """One block's input at 1/s: warped frames/features, t, flow/s, mask, features, averaged
    over the NSUB×NSUB full-size pixels (step·o + off + d) that bilinear resizing by 1/s reads."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < total
    xo = idx % w
    yo = (idx // w) % h
    n = idx // (w * h)
    c8 = tl.arange(0, 8)
    c16 = tl.arange(0, 16)
    m2 = valid[:, None]
    acc0 = tl.zeros((BLOCK, 8), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK, 8), dtype=tl.float32)
    accm = tl.zeros((BLOCK, 16), dtype=tl.float32)
    is_flow = c16[None, :] < 4
    is_mf = (c16[None, :] >= 4) & (c16[None, :] < 13)
    for dy in tl.static_range(NSUB):
        for dx in tl.static_range(NSUB):
            y = yo * step + off + dy
            x = xo * step + off + dx
            pix = ((n * H + y) * W + x).to(tl.int64)
            if HAS_FLOW:
                fx0 = tl.load(FLOW + pix * 4 + 0, mask=valid, other=0.0)
                fy0 = tl.load(FLOW + pix * 4 + 1, mask=valid, other=0.0)
                fx1 = tl.load(FLOW + pix * 4 + 2, mask=valid, other=0.0)
                fy1 = tl.load(FLOW + pix * 4 + 3, mask=valid, other=0.0)
                yf = y.to(tl.float32)
                xf = x.to(tl.float32)
                acc0 += _sample8(F0, n, yf + fy0, xf + fx0, H, W, c8, valid)
                acc1 += _sample8(F1, n, yf + fy1, xf + fx1, H, W, c8, valid)
                fl = tl.load(FLOW + pix[:, None] * 4 + c16[None, :], mask=m2 & is_flow, other=0.0)
                mf = tl.load(MF + pix[:, None] * 16 + c16[None, :], mask=m2 & is_mf, other=0.0)
                accm += fl * inv_s + mf.to(tl.float32)
            else:
                acc0 += tl.load(F0 + pix[:, None] * 8 + c8[None, :], mask=m2, other=0.0).to(tl.float32)
                acc1 += tl.load(F1 + pix[:, None] * 8 + c8[None, :], mask=m2, other=0.0).to(tl.float32)
    wt = 1.0 / (NSUB * NSUB)
    tv = tl.load(T + n, mask=valid, other=0.0)
    acc0 = tl.where(c8[None, :] == 7, tv[:, None], acc0 * wt)  # the features' 0 channel carries t
    base = idx.to(tl.int64)[:, None] * C_OUT
    tl.store(OUT + base + c8[None, :], acc0.to(tl.float16), mask=m2)
    tl.store(OUT + base + 8 + c8[None, :], (acc1 * wt).to(tl.float16), mask=m2)
    if HAS_FLOW:
        tl.store(OUT + base + 16 + c16[None, :], (accm * wt).to(tl.float16), mask=m2)


@triton.jit
def _src_off(b, yy, xx, c16, sc, sy, sx, SHUF: tl.constexpr):
    """Offsets [BLOCK, 16] of channels c16 at (yy, xx) of a block output; with SHUF, of the
    PixelShuffle(2) of the stored tensor (channel c at (yy, xx) is stored channel 4c + 2·(yy%2) + xx%2
    at (yy//2, xx//2)), read without materialising the shuffle."""
    if SHUF:
        ch = c16[None, :] * 4 + ((yy % 2) * 2 + (xx % 2))[:, None]
        return (b + (yy // 2).to(tl.int64) * sy + (xx // 2) * sx)[:, None] + ch * sc
    return (b + yy.to(tl.int64) * sy + xx * sx)[:, None] + c16[None, :] * sc


@triton.jit
def block_output(SRC, sn, sc, sy, sx, FLOW, MF, total, H, W, hs, ws, scale,
                 HAS_PREV: tl.constexpr, UP: tl.constexpr, SHUF: tl.constexpr, BLOCK: tl.constexpr):
    """Upsample a block's output (13 of its channels; hs×ws after the optional pixel shuffle) by
    `scale` to H×W: FLOW (+)= flow delta × scale (fp32), MF = all 16 channels (fp16)."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < total
    x = idx % W
    y = (idx // W) % H
    n = idx // (W * H)
    c16 = tl.arange(0, 16)
    m2 = valid[:, None] & (c16[None, :] < 13)
    b = n.to(tl.int64) * sn
    if UP:
        syf = tl.maximum((y.to(tl.float32) + 0.5) / scale - 0.5, 0.0)
        sxf = tl.maximum((x.to(tl.float32) + 0.5) / scale - 0.5, 0.0)
        y0 = tl.floor(syf).to(tl.int32)
        x0 = tl.floor(sxf).to(tl.int32)
        ly = (syf - y0.to(tl.float32))[:, None]
        lx = (sxf - x0.to(tl.float32))[:, None]
        y1 = tl.minimum(y0 + 1, hs - 1)
        x1 = tl.minimum(x0 + 1, ws - 1)
        v00 = tl.load(SRC + _src_off(b, y0, x0, c16, sc, sy, sx, SHUF), mask=m2, other=0.0).to(tl.float32)
        v01 = tl.load(SRC + _src_off(b, y0, x1, c16, sc, sy, sx, SHUF), mask=m2, other=0.0).to(tl.float32)
        v10 = tl.load(SRC + _src_off(b, y1, x0, c16, sc, sy, sx, SHUF), mask=m2, other=0.0).to(tl.float32)
        v11 = tl.load(SRC + _src_off(b, y1, x1, c16, sc, sy, sx, SHUF), mask=m2, other=0.0).to(tl.float32)
        top = v00 + (v01 - v00) * lx
        bot = v10 + (v11 - v10) * lx
        v = top + (bot - top) * ly
    else:
        v = tl.load(SRC + _src_off(b, y, x, c16, sc, sy, sx, SHUF), mask=m2, other=0.0).to(tl.float32)
    pix = idx.to(tl.int64)[:, None]
    fm = valid[:, None] & (c16[None, :] < 4)
    flow = v * scale
    if HAS_PREV:
        flow += tl.load(FLOW + pix * 4 + c16[None, :], mask=fm, other=0.0)
    tl.store(FLOW + pix * 4 + c16[None, :], flow, mask=fm)
    tl.store(MF + pix * 16 + c16[None, :], v.to(tl.float16), mask=valid[:, None])


@triton.jit
def final(F0, F1, SRC, sn, sc, sy, sx, FLOW, MF, OUT, total, H, W, h, w,
          FROM_SRC: tl.constexpr, BLOCK: tl.constexpr):
    """Warp both frames by the final flow, blend with sigmoid(mask), write rounded uint8 RGB
    (B, h, w, 3), cropped.  FROM_SRC: the last block ran at full size, and its output (the
    PixelShuffle(2) of SRC, read in place) plus FLOW gives flow and mask; else FLOW and MF hold them."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < total
    x = idx % w
    y = (idx // w) % h
    n = idx // (w * h)
    c8 = tl.arange(0, 8)
    pix = ((n * H + y) * W + x).to(tl.int64)
    fx0 = tl.load(FLOW + pix * 4 + 0, mask=valid, other=0.0)
    fy0 = tl.load(FLOW + pix * 4 + 1, mask=valid, other=0.0)
    fx1 = tl.load(FLOW + pix * 4 + 2, mask=valid, other=0.0)
    fy1 = tl.load(FLOW + pix * 4 + 3, mask=valid, other=0.0)
    if FROM_SRC:
        # shuffled channel c at (y, x) is stored channel 4c + 2·(y%2) + x%2 at (y//2, x//2)
        o = n.to(tl.int64) * sn + (y // 2).to(tl.int64) * sy + (x // 2) * sx + ((y % 2) * 2 + x % 2) * sc
        fx0 += tl.load(SRC + o, mask=valid, other=0.0).to(tl.float32)
        fy0 += tl.load(SRC + o + 4 * sc, mask=valid, other=0.0).to(tl.float32)
        fx1 += tl.load(SRC + o + 8 * sc, mask=valid, other=0.0).to(tl.float32)
        fy1 += tl.load(SRC + o + 12 * sc, mask=valid, other=0.0).to(tl.float32)
        logit = tl.load(SRC + o + 16 * sc, mask=valid, other=0.0).to(tl.float32)
    else:
        logit = tl.load(MF + pix * 16 + 4, mask=valid, other=0.0).to(tl.float32)
    yf = y.to(tl.float32)
    xf = x.to(tl.float32)
    v0 = _sample8(F0, n, yf + fy0, xf + fx0, H, W, c8, valid)
    v1 = _sample8(F1, n, yf + fy1, xf + fx1, H, W, c8, valid)
    m = tl.sigmoid(logit)[:, None]
    r = v1 + (v0 - v1) * m
    r = tl.floor(tl.minimum(tl.maximum(r, 0.0), 1.0) * 255.0 + 0.5)
    tl.store(OUT + idx.to(tl.int64)[:, None] * 3 + c8[None, :], r.to(tl.uint8),
             mask=valid[:, None] & (c8[None, :] < 3))


@triton.jit
def add_leaky(Y, X, n, BLOCK: tl.constexpr):
    """Y = leaky_relu(Y + X, 0.2) in place, over n elements of two same-layout dense tensors."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < n
    y = tl.load(Y + idx, mask=m, other=0.0).to(tl.float32)
    y += tl.load(X + idx, mask=m, other=0.0).to(tl.float32)
    y = tl.where(y >= 0.0, y, y * 0.2)
    tl.store(Y + idx, y.to(Y.dtype.element_ty), mask=m)
