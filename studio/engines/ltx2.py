"""`ltx2`: Lightricks LTX-2 image-to-video with generated sound (diffusers `LTX2ImageToVideoPipeline`).

The 19B transformer denoises a video stream and an audio stream together; the audio VAE decodes a
16 kHz mel spectrogram and the vocoder turns it into 24 kHz stereo.  The sound goes into `Clip.audio`,
trimmed or zero-padded to exactly the video's duration (frames / fps, to the sample).  The shipped
configs keep `rope_type: "split"` (the class default "interleaved" is another model).

The two-stage recipe (`two_stage`): stage 1 at half the requested size with the request's steps and
guidance, the ×2 latent upsampler, then 3 distilled steps at the full size with CFG 1 (an optional
distilled LoRA from the library, `stage2_lora`, is switched on for them).  See `ltx2_stages`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..params import SPEC, Param
from .ltx import LTXVideoEngine

if TYPE_CHECKING:
    from ..clip import Clip
    from ..request import GenerationRequest

IMAGE_CRF = 33  # LTX-2.0 was trained on H.264-compressed conditioning images (diffusers' default)
STG_BLOCKS_2_0 = [29]  # the docstring's recommendation for LTX-2.0

EXTRA: dict[str, Param] = {
    "two_stage": Param(
        "two_stage",
        bool,
        False,
        "LTX-2's two-stage recipe: the base model at half the "
        "size, the ×2 latent upsampler, then 3 distilled steps at full size (width and height "
        "multiples of 64; needs models/ltx2/latent_upsampler/).",
        advanced=True,
    ),
    "stage2_lora": Param(
        "stage2_lora",
        str,
        "",
        "A distilled LoRA from your library for the two-stage "
        "recipe's last steps (e.g. ltx-2-19b-distilled-lora-384); empty for a distilled "
        "checkpoint.",
        advanced=True,
    ),
    "stg_scale": Param(
        "stg_scale",
        float,
        1.0,
        "Spatio-temporal guidance (one more transformer pass a step; 0 = off).",
        min=0.0,
        max=10.0,
        step=0.1,
        advanced=True,
    ),
    "modality_scale": Param(
        "modality_scale",
        float,
        3.0,
        "Audio/video modality guidance (one more pass a step; 1 = off).",
        min=1.0,
        max=10.0,
        step=0.1,
        advanced=True,
    ),
    "audio_guidance": Param(
        "audio_guidance",
        float,
        7.0,
        "Classifier-free guidance for the sound.",
        min=1.0,
        max=20.0,
        step=0.5,
        advanced=True,
    ),
}


def recompress(image: Any, crf: int = IMAGE_CRF) -> Any:
    """The image through one H.264 frame at `crf` (libx264 veryfast, yuv420p, even size), as LTX-2
    was trained; done with the studio's own ffmpeg so PyAV is not needed."""
    import subprocess

    import imageio_ffmpeg
    from PIL import Image

    arr = np.asarray(image.convert("RGB"))
    h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
    arr = np.ascontiguousarray(arr[:h, :w])
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    enc = subprocess.run(
        [
            exe,
            "-v",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{w}x{h}",
            "-r",
            "1",
            "-i",
            "-",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            str(crf),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "h264",
            "-",
        ],
        input=arr.tobytes(),
        capture_output=True,
        check=True,
    )
    dec = subprocess.run(
        [
            exe,
            "-v",
            "error",
            "-f",
            "h264",
            "-i",
            "-",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        input=enc.stdout,
        capture_output=True,
        check=True,
    )
    return Image.fromarray(np.frombuffer(dec.stdout, np.uint8)[: h * w * 3].reshape(h, w, 3))


def fit_audio(wave: Any, rate: int, frames: int, fps: float) -> tuple[np.ndarray, int]:
    """(samples (n, channels) float32 in [-1, 1], vocoder samples) with n = round(frames / fps · rate):
    the vocoder's (channels, samples) output trimmed, or zero-padded at the end, to the video's length."""
    w = wave.float().cpu().numpy() if hasattr(wave, "cpu") else np.asarray(wave, np.float32)
    w = np.clip(np.asarray(w, np.float32).T, -1.0, 1.0)
    want = int(round(frames * rate / fps))
    got = w.shape[0]
    if got >= want:
        return np.ascontiguousarray(w[:want]), got
    return np.concatenate([w, np.zeros((want - got, w.shape[1]), np.float32)]), got


class LTX2Engine(LTXVideoEngine):
    """LTX-2 (19B) image-to-video with stereo sound; LoRAs through diffusers' `LTX2LoraLoaderMixin`."""

    id = "ltx2"
    family = "ltx2"
    label = "LTX-2 (video + sound)"
    description = (
        "19B audio-video model: picture and stereo sound together. Frames 8k+1, sizes multiples of 32."
    )
    repo = "Lightricks/LTX-2"
    engine_dir = "ltx2"
    pipeline_class = "LTX2ImageToVideoPipeline"
    embed_methods = ("encode_prompt",)
    tokenizer_repos: ClassVar[tuple[str, ...]] = ("google/gemma-3-12b-it",)

    def plan_audio(self, req: Any) -> Any:
        """Stereo at the vocoder's rate (24 kHz in the shipped config), exactly frames / fps long."""
        import json

        from ..audio import SoundSpec
        from .loading import configs_dir
        rate = 24000
        cfg = configs_dir(self.id) / "vocoder" / "config.json"
        if cfg.is_file():
            rate = int(json.loads(cfg.read_text()).get("output_sampling_rate", rate))
        return SoundSpec(rate=rate, channels=2, duration=int(req.frames) / float(req.fps))
    single_files: ClassVar[str] = "hf download Lightricks/LTX-2 ltx-2-19b-dev-fp8.safetensors"
    spec_overrides: ClassVar[dict[str, Param]] = {
        "steps": SPEC["steps"].override(default=30),
        "guidance": SPEC["guidance"].override(default=3.0),
        "frames": SPEC["frames"].override(default=121, min=9, max=257, step=8, frame_rule=(8, 1)),
        "fps": SPEC["fps"].override(default=24.0, max=60),
        "width": SPEC["width"].override(default=768, min=32, max=1920, step=32, multiple_of=32),
        "height": SPEC["height"].override(default=512, min=32, max=1920, step=32, multiple_of=32),
    }
    extra_params: ClassVar[dict[str, Param]] = EXTRA
    STAGE2_STEPS = 3
    cfg_in_one_call = True  # the pipeline batches CFG's two branches (the VRAM estimate's batch is 2)

    def check_request(self, req: GenerationRequest) -> None:
        """The two-stage recipe halves the size for stage 1: width and height must be multiples of 64."""
        super().check_request(req)
        if req.extra.get("two_stage"):
            for name in ("width", "height"):
                v = int(getattr(req, name))
                if v % 64:
                    raise ValueError(
                        f"{name}={v} must be a multiple of 64 with two_stage=True "
                        f"(stage 1 runs at half the size, on a 32-pixel grid)"
                    )

    def passes_per_step(self, req: GenerationRequest) -> int:
        """CFG (2) + STG (1) + modality isolation (1) sample-passes a step at the defaults."""
        n = 2 if float(req.guidance) > 1.0 else 1
        n += 1 if float(req.extra.get("stg_scale", 1.0)) > 0 else 0
        n += 1 if float(req.extra.get("modality_scale", 3.0)) > 1.0 else 0
        return n

    def seconds_estimate(self, req: GenerationRequest, device: str) -> float:
        """One stage, or the two-stage recipe: stage 1 at half size, then 3 one-pass steps at full size."""
        if not req.extra.get("two_stage"):
            return super().seconds_estimate(req, device)
        from .ltx2_stages import stage_requests

        one, two = stage_requests(self, req)
        return round(super().seconds_estimate(one, device) + super().seconds_estimate(two, device), 2)

    def total_steps(self, req: GenerationRequest, kwargs: dict[str, Any]) -> int:
        """Both stages' steps when the two-stage recipe runs."""
        n = super().total_steps(req, kwargs)
        return n + self.STAGE2_STEPS if req.extra.get("two_stage") else n

    def notes(self, req: GenerationRequest) -> list[str]:
        """What the two-stage recipe does to this request."""
        if not req.extra.get("two_stage"):
            return []
        lora = req.extra.get("stage2_lora") or "none (a distilled checkpoint is assumed)"
        return [
            f"two-stage: {req.steps} steps at {req.width // 2}x{req.height // 2}, x2 latent upsample, "
            f"{self.STAGE2_STEPS} distilled steps at {req.width}x{req.height} (CFG 1, LoRA {lora})"
        ]

    def pipe_kwargs(self, pipe: Any, image: Any, req: GenerationRequest, generator: Any) -> dict[str, Any]:
        """LTX-2 arguments: LTX-2.0 settings (no cross timestep, STG at block 29), the image already
        H.264-recompressed here (image_crf=0 then)."""
        x = req.extra
        return dict(
            image=recompress(image),
            prompt=req.prompt,
            negative_prompt=req.negative_prompt or None,
            height=req.height,
            width=req.width,
            num_frames=req.frames,
            frame_rate=float(req.fps),
            num_inference_steps=req.steps,
            guidance_scale=req.guidance,
            stg_scale=float(x.get("stg_scale", 1.0)),
            modality_scale=float(x.get("modality_scale", 3.0)),
            audio_guidance_scale=float(x.get("audio_guidance", 7.0)),
            audio_stg_scale=float(x.get("stg_scale", 1.0)) or None,
            audio_modality_scale=float(x.get("modality_scale", 3.0)),
            spatio_temporal_guidance_blocks=STG_BLOCKS_2_0,
            use_cross_timestep=False,
            image_crf=0,
            generator=generator,
            max_sequence_length=self.max_sequence_length(pipe),
        )

    def max_sequence_length(self, pipe: Any) -> int:
        """1024 Gemma tokens (the pipeline's default), fewer for a tokenizer with a shorter limit."""
        tok = getattr(pipe, "tokenizer", None)
        limit = int(getattr(tok, "model_max_length", 1024) or 1024)
        return max(8, min(1024, limit))

    def call_pipeline(self, pipe: Any, kwargs: dict[str, Any], req: GenerationRequest) -> Any:
        """One call, or the two-stage recipe (`ltx2_stages.run`)."""
        if not req.extra.get("two_stage"):
            return pipe(**kwargs)
        from .ltx2_stages import run_two_stage

        return run_two_stage(self, pipe, kwargs, req)

    def finish(self, clip: Clip, out: Any, pipe: Any, req: GenerationRequest) -> Clip:
        """The sound into `clip.audio`: the vocoder's stereo at its rate, exactly the video's length."""
        from ..audio import Audio

        rate = int(pipe.vocoder.config.output_sampling_rate)
        samples, got = fit_audio(out.audio[0], rate, clip.frames.shape[0], clip.fps)
        clip.meta["audio"] = {
            "rate": rate,
            "channels": int(samples.shape[1]),
            "samples": int(samples.shape[0]),
            "vocoder_samples": int(got),
            "source": "generated by LTX-2",
        }
        return clip.replace(audio=Audio(samples, rate))
