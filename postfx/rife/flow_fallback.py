"""Fallback interpolation without RIFE weights: OpenCV DIS optical flow, backward warping, blend.

Flow is measured both ways (0->1 and 1->0) on grey frames.  For time t the flows from the
in-between frame back to each end are approximated as in Super SloMo (linear motion):
    F(t->0) = -(1-t)·t·F(0->1) + t²·F(1->0)
    F(t->1) = (1-t)²·F(0->1) - t·(1-t)·F(1->0)
Each end frame is backward-warped with `cv2.remap` and the two are blended with weights 1-t and t.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


class DisInterpolator:
    """In-between frames from OpenCV's DIS optical flow (CPU, no weights)."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self.preset = preset
        self._dis = None

    def flows(self, img0: np.ndarray, img1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense flows 0->1 and 1->0 (H×W×2 float32, in pixels)."""
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(self.preset)
        g0 = cv2.cvtColor(img0, cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(img1, cv2.COLOR_RGB2GRAY)
        return self._dis.calc(g0, g1, None), self._dis.calc(g1, g0, None)

    def interpolate(self, img0: np.ndarray, img1: np.ndarray, timesteps: Sequence[float]) -> list[np.ndarray]:
        """uint8 frames at each t in `timesteps` (each in (0, 1)) between `img0` and `img1`."""
        if img0.shape != img1.shape or img0.dtype != np.uint8 or img0.ndim != 3:
            raise ValueError(f"need two uint8 H×W×3 frames of one size, got {img0.shape} {img0.dtype} "
                             f"and {img1.shape} {img1.dtype}")
        for t in timesteps:
            if not 0.0 < t < 1.0:
                raise ValueError(f"timestep {t!r} is not inside (0, 1)")
        f01, f10 = self.flows(img0, img1)
        h, w = img0.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        a = img0.astype(np.float32)
        b = img1.astype(np.float32)
        out = []
        for t in timesteps:
            ft0 = -(1 - t) * t * f01 + t * t * f10
            ft1 = (1 - t) * (1 - t) * f01 - t * (1 - t) * f10
            w0 = cv2.remap(a, gx + ft0[..., 0], gy + ft0[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            w1 = cv2.remap(b, gx + ft1[..., 0], gy + ft1[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            mid = (1 - t) * w0 + t * w1
            out.append(np.clip(mid + 0.5, 0, 255).astype(np.uint8))
        return out
