"""Assembly: the one final encode (H.264/H.265/VP9/ProRes/GIF/PNG folder), reading and probing.

Video goes straight to imageio-ffmpeg's bundled ffmpeg (the binary MoviePy v2 uses) through a pipe,
so the file holds exactly the frames the ledger promised at an exact rational fps.  We do not use
MoviePy's writer: it rounds fps to 2 decimals (23.976 -> 23.98), derives the frame count from a float
duration, and forces yuva420p for H.264.  Its audio reader also fails at clip edges when looping, so
audio is decoded with ffmpeg and looped/trimmed/faded in numpy.  No system ffmpeg is needed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from studio.clip import Clip, ClipSpec
from studio.context import RunContext
from studio.outputs import atomic_path

log = logging.getLogger(__name__)

CODEC_BY_EXT = {".mp4": "h264", ".m4v": "h264", ".mkv": "h264", ".webm": "vp9", ".gif": "gif",
                ".mov": "prores"}
CODECS = ("h264", "h265", "vp9", "prores", "gif", "png")
EXT_BY_CODEC = {"h264": ".mp4", "h265": ".mp4", "vp9": ".webm", "prores": ".mov", "gif": ".gif", "png": "/"}


def extension_for(codec: str | None) -> str:
    """The default output extension for a codec ('/' = a PNG frame folder; None = H.264 .mp4)."""
    return EXT_BY_CODEC.get(codec or "h264", ".mp4")
_EXT_OK = {"h264": (".mp4", ".m4v", ".mkv", ".mov"), "h265": (".mp4", ".mkv", ".mov"),
           "vp9": (".webm", ".mkv"), "prores": (".mov",), "gif": (".gif",)}


def die_with_parent() -> None:
    """In a child before exec (Linux): ask for SIGKILL when the parent dies, so an encoder never
    outlives a killed worker to keep writing its temp file."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the worker's own clean-up still applies
        pass


def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg binary."""
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class AudioSpec:
    """An audio track under the video: trimmed or looped to its length, with fades."""

    path: str
    offset: float = 0.0      # seconds into the audio file to start from
    volume: float = 1.0
    fade_in: float = 0.5
    fade_out: float = 0.5
    loop: bool = True        # loop audio shorter than the video (else silence after it ends)

    def check(self) -> AudioSpec:
        """Validate; raise ValueError naming the bad value."""
        if not Path(self.path).is_file():
            raise ValueError(f"audio file {self.path!r} does not exist")
        for name in ("offset", "fade_in", "fade_out"):
            if getattr(self, name) < 0:
                raise ValueError(f"audio {name}={getattr(self, name)} must be ≥ 0")
        if not (0 <= self.volume <= 4):
            raise ValueError(f"audio volume={self.volume} must be within 0..4")
        return self


def codec_for(out: str | Path, codec: str | None = None) -> str:
    """The codec for an output path (from its extension unless given); ValueError if they clash."""
    s = str(out)
    if s.endswith("/") or codec == "png":
        return "png"
    ext = Path(s).suffix.lower()
    if codec is None:
        if ext not in CODEC_BY_EXT:
            raise ValueError(f"output {s!r}: unknown extension {ext!r} (use .mp4, .webm, .gif, .mov, "
                             f"or end the path with / for PNG frames)")
        return CODEC_BY_EXT[ext]
    if codec not in CODECS:
        raise ValueError(f"codec={codec!r} is not one of {', '.join(CODECS)}")
    if ext not in _EXT_OK[codec]:
        raise ValueError(f"codec={codec} cannot be written to a {ext or 'extension-less'} file "
                         f"(use {', '.join(_EXT_OK[codec])})")
    return codec


def plan_output(spec: ClipSpec, codec: str) -> ClipSpec:
    """The written file's shape: yuv420 codecs need even sizes (one edge pixel is replicated)."""
    if codec in ("h264", "h265", "vp9"):
        return spec.with_(width=spec.width + spec.width % 2, height=spec.height + spec.height % 2)
    return spec


def _rate(fps: float) -> str:
    fr = Fraction(fps).limit_denominator(1001)
    return f"{fr.numerator}/{fr.denominator}"


def _video_args(codec: str, crf: int, preset: str) -> list[str]:
    if codec == "h264":
        return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-movflags", "+faststart"]
    if codec == "h265":
        return ["-c:v", "libx265", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-tag:v", "hvc1", "-movflags", "+faststart", "-x265-params", "log-level=error"]
    if codec == "vp9":
        return ["-c:v", "libvpx-vp9", "-crf", str(min(63, crf + 13)), "-b:v", "0", "-pix_fmt", "yuv420p",
                "-row-mt", "1", "-deadline", "good", "-cpu-used", "4"]
    if codec == "prores":
        return ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"]
    if codec == "gif":
        return ["-filter_complex", "[0:v]split[a][b];[a]palettegen=stats_mode=diff[p];"
                "[b][p]paletteuse=dither=sierra2_4a", "-loop", "0"]
    raise ValueError(f"codec={codec!r} has no video settings")


def _even(frames: np.ndarray) -> np.ndarray:
    t, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def decode_audio(path: str | Path, sr: int = 44100, channels: int = 2, *, start: float = 0.0,
                 duration: float | None = None) -> np.ndarray:
    """Decode audio (or a video's audio track) to float32 samples × channels: from `start` seconds,
    at most `duration` seconds of it (None: to the end); only that span is decoded
    (`postfx.media`: sniffed container, forced demuxer, file protocol only)."""
    from .media import decode_audio as _decode
    arr = _decode(path, sr, channels, start=start, duration=duration)
    if arr.shape[0] == 0:
        raise ValueError(f"audio file {Path(path).name!r} holds no audio samples"
                         + (f" after {start:g} s" if start > 0 else ""))
    return arr


def _ramp(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n, dtype=np.float32)))[:, None]


def fit_audio(arr: np.ndarray, sr: int, duration: float, *, loop: bool = True, fade_in: float = 0.0,
              fade_out: float = 0.0, volume: float = 1.0, join_fade: float = 0.01) -> np.ndarray:
    """Loop or trim samples to `duration`; short fades at loop joins (no clicks); fades in/out."""
    want = int(round(duration * sr))
    if arr.shape[0] >= want:
        out = arr[:want].copy()
    elif loop:
        j = min(int(join_fade * sr), arr.shape[0] // 4)
        piece = arr.copy()
        if j > 0:
            piece[:j] *= _ramp(j)
            piece[-j:] *= _ramp(j)[::-1]
        reps = int(np.ceil(want / arr.shape[0]))
        out = np.concatenate([piece] * reps)[:want].copy()
    else:  # stop where the sound stops, with a short ramp so it does not click
        j = min(int(join_fade * sr), arr.shape[0] // 4)
        tail = arr.copy()
        if j > 0:
            tail[-j:] *= _ramp(j)[::-1]
        out = np.concatenate([tail, np.zeros((want - arr.shape[0], arr.shape[1]), arr.dtype)])
    out *= volume
    n_in = min(int(fade_in * sr), want // 2)
    n_out = min(int(fade_out * sr), want // 2)
    if n_in > 0:
        out[:n_in] *= _ramp(n_in)
    if n_out > 0:
        out[-n_out:] *= _ramp(n_out)[::-1]
    return out


def prepare_audio(audio: AudioSpec, duration: float, dest: Path, sr: int = 44100) -> Path:
    """Cut the audio bed to `duration` (offset, loop or trim, volume, fades) into a WAV file."""
    _write_wav(dest, prepare_samples(audio, duration, sr), sr)
    return dest


def _write_wav(path: Path, arr: np.ndarray, fps: int) -> None:
    import wave
    pcm = (np.clip(arr, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(fps)
        w.writeframes(pcm.tobytes())


def write_video(clip: Clip, out: str | Path, *, codec: str | None = None, crf: int = 18,
                preset: str = "medium", audio: AudioSpec | None = None,
                ctx: RunContext | None = None) -> Path:
    """Encode `clip` once to `out` (atomically) and return the final path.

    The clip's sound (`clip.audio`, or the file an `AudioSpec` names, which replaces it) is muxed
    exactly as long as the video: AAC in MP4/MOV, Opus in WebM.  A GIF or a PNG folder cannot carry
    sound, so it is saved beside them as a WAV (`<out>.wav`, or `audio.wav` in the folder).
    A path ending in '/' (or codec 'png') writes a folder of PNG frames plus `fps.txt`.
    """
    from studio.audio import Audio

    from .mux import BESIDE, beside_path, for_mux, mux_args, write_wav

    ctx = ctx or RunContext()
    codec = codec_for(out, codec)
    t = clip.frames.shape[0]
    sound = clip.audio
    if audio is not None:
        sound = Audio(prepare_samples(audio, t / clip.fps), 44100)
    if sound is not None:
        sound = for_mux(sound, t / clip.fps)
    if codec == "png":
        return _write_png_folder(clip, Path(str(out).rstrip("/")), ctx, sound)
    frames = _even(clip.frames) if codec in ("h264", "h265", "vp9") else clip.frames
    t, h, w, _ = frames.shape
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix=f"studio-enc-{os.getpid()}-") as td, atomic_path(out) as tmp:
        cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", _rate(clip.fps),
               "-i", "-"]
        a_in, a_out = ([], [])
        if sound is not None and codec not in BESIDE:
            a_in, a_out = mux_args(sound, Path(td) / "audio.f32", codec)
        cmd += a_in + _video_args(codec, crf, preset) + a_out
        cmd += ["-frames:v", str(t), str(tmp)]
        _encode(cmd, frames, ctx, out, codec)
        if sound is not None and codec in BESIDE:   # the GIF's sound goes beside it, written first
            with atomic_path(beside_path(out, codec)) as wtmp:
                write_wav(wtmp, sound)
            log.info("%s cannot carry sound: saved it beside as %s", out.name, beside_path(out, codec).name)
    return out


def prepare_samples(audio: AudioSpec, duration: float, sr: int = 44100) -> np.ndarray:
    """An `AudioSpec`'s file cut to `duration` (offset, loop or trim, volume, fades) as samples."""
    audio.check()
    from .media import decode_audio as _decode
    arr = _decode(audio.path, sr, start=audio.offset, duration=duration)   # only what is heard
    if arr.shape[0] == 0:
        raise ValueError(f"audio offset={audio.offset} is at or past the end of {Path(audio.path).name}")
    return fit_audio(arr, sr, duration, loop=audio.loop, fade_in=audio.fade_in,
                     fade_out=audio.fade_out, volume=audio.volume)


def _encode(cmd: list[str], frames: np.ndarray, ctx: RunContext, out: Path, codec: str) -> None:
    t = frames.shape[0]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)
    # a slow encoder blocks our writes (and its final flush takes seconds): a cancel kills it
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_on_cancel, args=(proc, ctx, stop), daemon=True)
    watcher.start()
    try:
        for i in range(t):
            ctx.step("encode", i + 1, t)
            proc.stdin.write(np.ascontiguousarray(frames[i]).tobytes())
        proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
        ctx.check_cancel()
    except BrokenPipeError:
        proc.kill()
        proc.wait()
        ctx.check_cancel()    # killed by a cancel: raise Cancelled, not a broken pipe
        raise
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        stop.set()
    if rc != 0:
        raise RuntimeError(f"ffmpeg failed encoding {out.name} ({codec}): {err.strip()[-500:]}")


def _kill_on_cancel(proc: subprocess.Popen, ctx: RunContext, stop: threading.Event) -> None:
    while not stop.is_set() and proc.poll() is None:
        if ctx.cancel.wait(0.1):
            proc.kill()
            return


def _write_png_folder(clip: Clip, out: Path, ctx: RunContext, sound: Any = None) -> Path:
    import cv2

    from .mux import write_wav
    with atomic_path(out, is_dir=True) as tmp:
        if sound is not None:
            write_wav(tmp / "audio.wav", sound)
            log.info("a PNG folder cannot carry sound: saved it beside the frames as audio.wav")
        n = clip.frames.shape[0]
        for i, f in enumerate(clip.frames):
            ctx.step("encode", i + 1, n)
            if not cv2.imwrite(str(tmp / f"frame_{i:05d}.png"), f[:, :, ::-1]):
                raise RuntimeError(f"could not write PNG frame {i} into {out}")
        (tmp / "fps.txt").write_text(f"{clip.fps!r}\n")
    return out


def probe_video(path: str | Path) -> dict[str, Any]:
    """Frames, fps, size, duration and format of a video, from its header (`postfx.media.probe`):
    `frames` is the count every decode of it yields (its constant-rate grid), nothing is decoded."""
    from .media import probe
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"video {p.name!r} does not exist")
    f = probe(p)
    if not f.has_video:
        raise ValueError(f"{p.name} holds no video stream")
    return {"frames": f.frames, "fps": f.fps, "width": f.width, "height": f.height, "duration": f.duration,
            "format": f.format, "has_audio": f.has_audio, "codec": f.codec, "pix_fmt": f.pix_fmt}


def read_video(path: str | Path, max_frames: int | None = None, *, start_frame: int = 0) -> Clip:
    """Decode a video file (or a PNG frame folder written by `write_video`) into a Clip.

    A file is decoded on its constant-rate grid (`postfx.media.read_frames`): frames `start_frame`
    .. `start_frame + max_frames - 1` only (the decoder seeks and stops), locked to its sniffed format.
    """
    p = Path(str(path).rstrip("/"))
    if p.is_dir():
        clip = _read_png_folder(p)
        end = None if max_frames is None else start_frame + max_frames
        return Clip(np.ascontiguousarray(clip.frames[start_frame:end]), clip.fps, clip.meta)
    if not p.is_file():
        raise ValueError(f"input {p.name!r} does not exist")
    from .media import probe, read_frames
    f = probe(p)
    if not f.has_video:
        raise ValueError(f"{p.name} holds no video stream")
    count = f.frames - start_frame if max_frames is None else min(max_frames, f.frames - start_frame)
    frames = read_frames(p, f, start=start_frame, count=count)
    return Clip(frames, f.fps, {"source": str(p)})


def _read_png_folder(p: Path) -> Clip:
    import cv2
    files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".png")
    if not files:
        raise ValueError(f"folder {p} holds no PNG frames")
    frames = []
    for f in files:
        im = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if im is None:
            raise ValueError(f"frame {f} is not a readable PNG")
        frames.append(im[:, :, ::-1])
    shapes = {fr.shape for fr in frames}
    if len(shapes) != 1:
        raise ValueError(f"frames in {p} differ in size: {sorted(shapes)}")
    fps_file = p / "fps.txt"
    fps = float(fps_file.read_text().strip()) if fps_file.is_file() else 8.0
    return Clip(np.ascontiguousarray(np.stack(frames)), fps, {"source": str(p)})


def last_frame(path: str | Path) -> np.ndarray:
    """The last decoded frame of a video or frame folder (RGB uint8); a file decodes only that frame."""
    p = Path(str(path).rstrip("/"))
    if p.is_file():
        n = probe_video(p)["frames"]
        return read_video(p, 1, start_frame=n - 1).frames[-1].copy()
    return read_video(path).frames[-1].copy()


def mp4_atom_order(path: str | Path) -> list[str]:
    """Top-level MP4 box types in file order (to check that moov comes before mdat)."""
    import struct
    order = []
    with open(path, "rb") as f:
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:
                break
            size, typ = struct.unpack(">I4s", hdr)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
                f.seek(size - 16, 1)
            elif size == 0:
                order.append(typ.decode("latin-1"))
                break
            else:
                f.seek(size - 8, 1)
            order.append(typ.decode("latin-1"))
    return order
