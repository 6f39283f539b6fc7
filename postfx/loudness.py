"""Loudness: integrated loudness (ITU-R BS.1770-4, measured with pyloudnorm), true peak, normalising.

`normalise` brings a mix to a target integrated loudness (default -14 LUFS, the streaming norm)
with its true peak (4× oversampled, BS.1770-4 Annex 2) at or under a ceiling (default -1 dBTP):
one gain, then, only where the gain pushed peaks over the ceiling, a look-ahead limiter, and the
gain measured again so the limited mix still meets the target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from studio.audio import db_to_gain

log = logging.getLogger(__name__)

TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
GATE_BLOCK_S = 0.4     # BS.1770's gating block: shorter sound has no integrated loudness


def integrated_lufs(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (-inf for silence or sound shorter than one 0.4 s block)."""
    import pyloudnorm

    if samples.shape[0] < int(GATE_BLOCK_S * rate) + 1 or not np.any(samples):
        return float("-inf")
    return float(pyloudnorm.Meter(rate).integrated_loudness(samples.astype(np.float64)))


def true_peak_dbtp(samples: np.ndarray, rate: int) -> float:
    """True peak in dBTP: the sample peak of the signal oversampled 4× (BS.1770-4 Annex 2)."""
    from scipy.signal import resample_poly

    if not np.any(samples):
        return float("-inf")
    over = 4 if rate < 96_000 else 2
    peak = float(np.max(np.abs(resample_poly(samples.astype(np.float64), over, 1, axis=0))))
    peak = max(peak, float(np.max(np.abs(samples))))
    return 20.0 * np.log10(peak)


def limit(samples: np.ndarray, rate: int, ceiling_db: float, lookahead_s: float = 0.005,
          release_s: float = 0.05) -> np.ndarray:
    """A look-ahead peak limiter: the gain dips ahead of each peak over the ceiling, then recovers."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    ceil = db_to_gain(ceiling_db)
    level = np.abs(samples).max(axis=1)
    need = np.minimum(1.0, ceil / np.maximum(level, 1e-12))
    la, rel = max(1, int(lookahead_s * rate)), max(1, int(release_s * rate))
    # the lowest gain needed from `la` samples ahead to `rel` behind (look-ahead and hold), smoothed
    # over the look-ahead (the attack) and the release; never above what a sample itself needs
    g = minimum_filter1d(need, size=la + rel + 1, origin=(rel - la) // 2, mode="nearest")
    g = uniform_filter1d(g, size=la, mode="nearest")
    g = np.minimum(g, need)
    return (samples * g[:, None]).astype(np.float32)


@dataclass
class LoudnessReport:
    """What normalising did: loudness and true peak before and after, and the gain applied."""

    before_lufs: float
    after_lufs: float
    true_peak_dbtp: float
    gain_db: float
    limited: bool

    def to_dict(self) -> dict[str, float | bool]:
        """JSON-ready, rounded."""
        def r(x: float) -> float | None:
            return None if not np.isfinite(x) else round(float(x), 2)
        return {"before_lufs": r(self.before_lufs), "after_lufs": r(self.after_lufs),
                "true_peak_dbtp": r(self.true_peak_dbtp), "gain_db": r(self.gain_db), "limited": self.limited}


def normalise(samples: np.ndarray, rate: int, target_lufs: float = TARGET_LUFS,
              ceiling_dbtp: float = CEILING_DBTP) -> tuple[np.ndarray, LoudnessReport]:
    """`samples` at `target_lufs` integrated with a true peak ≤ `ceiling_dbtp` (silence stays silent)."""
    before = integrated_lufs(samples, rate)
    if not np.isfinite(before):
        return samples, LoudnessReport(before, before, true_peak_dbtp(samples, rate), 0.0, False)
    gain = target_lufs - before
    out = (samples * db_to_gain(gain)).astype(np.float32)
    limited = False
    margin = 0.3   # the limiter works on 4× oversampled peaks' stand-in, the sample peak: keep a margin
    for _ in range(4):
        tp = true_peak_dbtp(out, rate)
        if tp <= ceiling_dbtp:
            break
        limited = True
        out = limit(out, rate, ceiling_dbtp - margin)
        now = integrated_lufs(out, rate)
        if np.isfinite(now) and now < target_lufs - 0.1:   # make up what limiting took, then limit again
            out = (out * db_to_gain(min(target_lufs - now, 6.0))).astype(np.float32)
            gain += min(target_lufs - now, 6.0)
        margin += 0.3
    tp = true_peak_dbtp(out, rate)
    if tp > ceiling_dbtp:       # still over: a plain gain down settles it (loudness may fall short)
        out = (out * db_to_gain(ceiling_dbtp - tp)).astype(np.float32)
        gain += ceiling_dbtp - tp
        tp = ceiling_dbtp
    after = integrated_lufs(out, rate)
    log.info("loudness %.2f -> %.2f LUFS (gain %+.2f dB), true peak %.2f dBTP%s", before, after, gain, tp,
             ", limited" if limited else "")
    return out, LoudnessReport(before, after, tp, gain, limited)
