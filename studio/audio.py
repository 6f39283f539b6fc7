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
