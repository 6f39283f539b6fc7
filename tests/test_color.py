"""Colour match (low-frequency correction), colour drift and Lab stats transfer on real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from postfx.color import color_drift, color_match, match_lab_stats

DATA = Path(__file__).resolve().parent / "data"


def _img(name: str = "coffee.jpg") -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2RGB)


def _cast(img: np.ndarray) -> np.ndarray:
    """A warm cast that also brightens towards the right: low-frequency only."""
    h, w = img.shape[:2]
    ramp = np.linspace(0, 12, w, dtype=np.float32)[None, :, None]
    shift = np.array([18, -4, -16], np.float32) + ramp * np.array([1, 1, 0.5], np.float32)
    return np.clip(img.astype(np.float32) + shift, 0, 255).astype(np.uint8)


def _highpass_energy(img: np.ndarray) -> float:
    f = img.astype(np.float32)
    return float(np.mean((f - cv2.GaussianBlur(f, (0, 0), 1.5)) ** 2))


def test_cast_removed_detail_kept():
    """An upscaled frame with a cast: mean error drops ≥ 5×, high-pass energy stays within 5%."""
    ref = _img()[60:124, 100:196]                                  # 64×96 source
    clean = cv2.resize(ref, (192, 128), interpolation=cv2.INTER_LANCZOS4)
    casted = _cast(clean)
    fixed = color_match(ref, casted[None])[0]
    before = np.abs(casted.astype(float) - clean).mean()
    after = np.abs(fixed.astype(float) - clean).mean()
    assert before > 12.0
    assert after < before / 5 and after < 2.5
    e_clean, e_fixed = _highpass_energy(clean), _highpass_energy(fixed)
    assert abs(e_fixed / e_clean - 1.0) < 0.05
    # the colour is back: drift to the source under 1 ΔE (it was far above)
    assert color_drift(casted, ref) > 8.0 and color_drift(fixed, ref) < 1.0


def test_match_to_itself_changes_nothing():
    """Same-size frames matched to themselves come back within one grey level."""
    frames = np.stack([_img("rocket.jpg")[:48, :64], _img("chelsea.jpg")[:48, :64]])
    out = color_match(frames, frames, sigma=2.0)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames).max() <= 1


def test_one_reference_for_many_frames():
    """A single reference frame is used for every frame."""
    ref = _img()[:32, :32]
    frames = np.stack([_cast(cv2.resize(ref, (64, 64), interpolation=cv2.INTER_CUBIC))] * 3)
    out = color_match(ref, frames)
    assert out.shape == (3, 64, 64, 3)
    assert all(color_drift(f, ref) < 1.0 for f in out)


def test_drift_measures_colour_not_motion():
    """Identical: 0; a shifted crop of the same scene: small; a colour cast: large."""
    img = _img("motorcycle_left.jpg")
    a, moved = img[50:250, 50:300], img[58:258, 62:312]
    assert color_drift(a, a) == pytest.approx(0.0, abs=1e-6)
    assert color_drift(a, moved) < 2.0
    assert color_drift(a, _cast(a)) > 8.0
    assert color_drift(a, cv2.resize(a, (125, 100), interpolation=cv2.INTER_AREA)) < 0.5


def test_lab_stats_transfer():
    """Mean/std transfer in Lab fixes a cast on different content; strength 0 is a no-op."""
    ref = _img()[:80, :80]
    other = _cast(_img()[100:180, 200:280])
    fixed = match_lab_stats(other, ref)
    assert color_drift(other, ref) > 50.0          # a dark, warm crop against a bright one
    assert color_drift(fixed, ref) < 3.0           # what is left is gamut clipping
    half = match_lab_stats(other, ref, strength=0.5)
    assert 0.3 < color_drift(half, ref) / color_drift(other, ref) < 0.7
    same = match_lab_stats(other, ref, strength=0.0)
    assert np.abs(same.astype(int) - other).max() <= 1


def test_bad_inputs_named():
    """ValueError names the bad value."""
    f = _img()[:16, :16]
    with pytest.raises(ValueError, match="sigma=0"):
        color_match(f, f, sigma=0)
    with pytest.raises(ValueError, match="reference has 2 frames but frames has 3"):
        color_match(np.stack([f] * 2), np.stack([f] * 3))
    with pytest.raises(ValueError, match="frames must be uint8"):
        color_match(f, f.astype(np.float32))
    with pytest.raises(ValueError, match="strength=2"):
        match_lab_stats(f, f, strength=2)
