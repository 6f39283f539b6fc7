"""A test engine that makes sound: the camera engine's frames plus a sine tone as long as them."""

from __future__ import annotations

import dataclasses

import numpy as np

from studio.audio import Audio, SoundSpec
from studio.engines.camera import CameraEngine

RATE = 24_000       # LTX-2's vocoder rate
TONE_HZ = 600.0


def tone(seconds: float, freq: float = TONE_HZ, rate: int = RATE, amp: float = 0.3,
         channels: int = 2) -> np.ndarray:
    """A sine of `seconds` as float32 (n, channels)."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


class ToneEngine(CameraEngine):
    """Camera frames with a stereo 600 Hz tone at 24 kHz, exactly as long as the frames."""

    id = "tone-camera"
    label = "camera + tone (tests)"

    def plan_audio(self, req):
        """24 kHz stereo, as long as the frames."""
        return SoundSpec(RATE, 2, req.frames / float(req.fps))

    def generate(self, image, req, ctx):
        """The camera's clip with the tone in `Clip.audio`."""
        clip = super().generate(image, req, ctx)
        return dataclasses.replace(clip, audio=Audio(tone(clip.spec.duration), RATE))
