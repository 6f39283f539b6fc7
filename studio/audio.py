"""Sound that belongs to a clip: float32 samples (n, channels) in [-1, 1] at a sample rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Audio:
    """Samples as float32 (n_samples, channels) in [-1, 1], and their rate in Hz."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.rate

    def __post_init__(self) -> None:
        s = self.samples
        if not isinstance(s, np.ndarray) or s.dtype != np.float32 or s.ndim != 2 or not 1 <= s.shape[1] <= 8:
            raise ValueError(f"Audio samples must be float32 (n, channels) with 1..8 channels, got "
                             f"shape={getattr(s, 'shape', None)} dtype={getattr(s, 'dtype', None)}")
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | np.integer) or \
                not 1000 <= int(self.rate) <= 384_000:
            raise ValueError(f"Audio rate={self.rate!r} must be a whole number of Hz in 1000..384000")

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[1])

    @property
    def spec(self) -> SoundSpec:
        """This sound's shape as a `SoundSpec`."""
        return SoundSpec(int(self.rate), self.channels, self.duration)

    def describe(self) -> str:
        """e.g. '24000 Hz stereo, 5.042 s'."""
        return self.spec.describe()


@dataclass(frozen=True)
class SoundSpec:
    """What the ledger knows about a clip's sound before it exists: rate, channels and seconds."""

    rate: int
    channels: int
    duration: float

    def describe(self) -> str:
        """e.g. '24000 Hz stereo, 5.042 s'."""
        ch = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} ch")
        return f"{self.rate} Hz {ch}, {self.duration:.3f} s"


def samples_for(seconds: float, rate: int) -> int:
    """How many samples `seconds` is at `rate` (rounded to the nearest sample)."""
    return int(round(seconds * rate))


def ramp(n: int) -> np.ndarray:
    """A raised-cosine ramp 0 → 1 over n samples, shaped (n, 1)."""
    return (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32)))[:, None]


DECLICK_S = 0.005   # the ramp put on any edge where sound is cut (no clicks)


def fit_length(samples: np.ndarray, n: int, rate: int, declick: bool = True) -> np.ndarray:
    """`samples` trimmed or padded with silence to exactly n samples; a cut edge gets a short ramp."""
    if samples.shape[0] == n:
        return samples
    if samples.shape[0] > n:
        out = samples[:n].copy()
        k = min(int(DECLICK_S * rate), n // 2)
        if declick and k > 0:
            out[-k:] *= ramp(k)[::-1]
        return out
    pad = np.zeros((n - samples.shape[0], samples.shape[1]), np.float32)
    return np.concatenate([samples.astype(np.float32, copy=False), pad])


def fit_to(audio: Audio | None, seconds: float) -> Audio | None:
    """`audio` trimmed or padded to `seconds` (a video's duration), or None."""
    if audio is None:
        return None
    n = samples_for(seconds, audio.rate)
    if n == audio.samples.shape[0]:
        return audio
    return Audio(fit_length(audio.samples, n, audio.rate), audio.rate)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Samples at `rate_in` as samples at `rate_out` (polyphase filter; length rounded to the sample)."""
    if rate_in == rate_out or samples.shape[0] == 0:
        return samples.astype(np.float32, copy=False)
    from fractions import Fraction

    from scipy.signal import resample_poly
    fr = Fraction(int(rate_out), int(rate_in))
    out = resample_poly(samples.astype(np.float64), fr.numerator, fr.denominator, axis=0)
    want = samples_for(samples.shape[0] / rate_in, rate_out)
    return fit_length(out.astype(np.float32), want, rate_out, declick=False)


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Mono ↔ stereo (a mono signal is copied to both sides; stereo is averaged to mono)."""
    have = samples.shape[1]
    if have == channels:
        return samples
    if have == 1:
        return np.repeat(samples, channels, axis=1)
    if channels == 1:
        return samples.mean(axis=1, keepdims=True, dtype=np.float32)
    raise ValueError(f"cannot map {have} channels to {channels}")


def conform(audio: Audio, rate: int, channels: int) -> np.ndarray:
    """`audio`'s samples at `rate` with `channels` channels."""
    return to_channels(resample(audio.samples, audio.rate, rate), channels)


def db_to_gain(db: float) -> float:
    """A level change in dB as a linear factor."""
    return float(10.0 ** (db / 20.0))


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS (-inf for silence)."""
    if samples.size == 0:
        return float("-inf")
    ms = float(np.mean(np.square(samples, dtype=np.float64)))
    return 10.0 * np.log10(ms) if ms > 0 else float("-inf")


def peak_dbfs(samples: np.ndarray) -> float:
    """Sample peak in dBFS (-inf for silence)."""
    p = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * np.log10(p) if p > 0 else float("-inf")


def envelope(samples: np.ndarray, rate: int, points: int) -> np.ndarray:
    """Peak level of `points` equal slices (0..1): a waveform strip for the timeline."""
    n = samples.shape[0]
    if n == 0 or points < 1:
        return np.zeros(max(points, 0), np.float32)
    mono = np.abs(samples).max(axis=1)
    edges = np.linspace(0, n, points + 1).astype(int)
    return np.array([mono[a:b].max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:],
                                                                       strict=True)], np.float32)
