"""Media inputs, read safely: a file's container is sniffed from its bytes, refused unless it is a plain
single-file container, and every ffmpeg that reads it is locked to that demuxer.

ffmpeg's format auto-detection is what makes a file "point elsewhere": a `.mp3` whose first bytes are
an HLS playlist (`#EXTM3U`) is played as a playlist, and the playlist names other files (server files,
URLs); `ffconcat` lists, SDP text, image-sequence patterns and DASH/SMIL XML do the same.  Here:

* `sniff(path)` reads the first bytes and names the demuxer from an allow-list (`ALLOWED`): WAV, AVI,
  FLAC, Ogg, Matroska/WebM, MP4/MOV (ISO BMFF), MP3, GIF.  Anything else (text, XML, playlists, lists,
  unknown bytes) is refused with a reason.  Decoding never auto-detects.
* `input_args(path)` is what goes before every ffmpeg `-i`: `-protocol_whitelist file` (no network,
  no nested protocols), `-f <demuxer>` forced, and for MOV/MP4 `-enable_drefs 0` (no external data
  references), then the input as an absolute `file:` URL (a name with ':' is never a protocol).
* `probe(path)` reads the header once (no frame is decoded) and returns `MediaFacts`.  A video is
  planned and decoded on a constant frame-rate grid: `frames = round(duration × fps)` where fps is
  the stream's nominal rate; `read_frames` asks ffmpeg for exactly that grid (`fps` filter, `-frames:v`)
  and pads a short decode with its last frame, so a variable-frame-rate file gives the frame count
  the ledger computed from these facts, never more.
* `read_frames(path, start, count)` seeks (`-ss`) and stops (`-frames:v`) at the decoder, so a trim
  decodes only the span it uses; `decode_audio(path, start=, duration=)` does the same for sound.

Error messages name the file by its base name only and never carry ffmpeg's own text (which shows
server paths and heap addresses); ffmpeg's text goes to the log.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 60.0
# demuxer -> kinds of media it may hold (what `sniff` can answer; nothing else is ever decoded)
ALLOWED: dict[str, tuple[str, ...]] = {
    "wav": ("audio",), "flac": ("audio",), "mp3": ("audio",), "ogg": ("audio", "video"),
    "mov": ("audio", "video"), "matroska": ("audio", "video"), "avi": ("video",), "gif": ("video",),
}
_REFUSED_TEXT = (
    (b"#EXTM3U", "an M3U/HLS playlist"), (b"#EXT", "an M3U/HLS playlist"),
    (b"[playlist]", "a PLS playlist"), (b"ffconcat", "an ffconcat list"), (b"file ", "a concat list"),
    (b"<?xml", "an XML document (DASH manifest, SMIL or playlist)"), (b"<", "a markup document"),
    (b"v=0", "an SDP session description"), (b"WEBVTT", "a subtitle file"),
)


class MediaRefused(ValueError):
    """A file the studio will not decode: `reason` says what it is."""

    def __init__(self, name: str, reason: str, *, refers: bool = False) -> None:
        super().__init__(f"{name} {reason}")
        self.reason = reason
        self.refers = refers     # it is a playlist, list or document that names other files or URLs


def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg binary ($IMAGEIO_FFMPEG_EXE overrides it)."""
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def _is_mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    # an MPEG audio frame header: 11 sync bits, a version, a layer that is not 0 (0 is AAC's ADTS)
    return len(head) >= 4 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0 \
        and (head[2] & 0xF0) != 0xF0


def sniff(path: str | Path, name: str | None = None) -> str:
    """The demuxer for a file, from its first bytes; `MediaRefused` unless it is in `ALLOWED`."""
    p = Path(path)
    name = name or p.name
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError:
        raise MediaRefused(name, "cannot be read") from None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "matroska"
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if _is_mp3(head):
        return "mp3"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic, what in _REFUSED_TEXT:
        if text[:len(magic)].lower() == magic.lower():
            raise MediaRefused(name, f"is {what}; files that name other files or URLs are refused",
                               refers=True)
    raise MediaRefused(name, "is not an image, video or audio file the studio can read")


def input_args(path: str | Path, fmt: str | None = None, *, start: float = 0.0,
               duration: float | None = None) -> list[str]:
    """ffmpeg input options and `-i` for `path`, locked to its sniffed demuxer and the file protocol."""
    fmt = fmt or sniff(path)
    if fmt not in ALLOWED:
        raise MediaRefused(Path(path).name, f"is in format {fmt!r}, which the studio does not decode")
    args = ["-protocol_whitelist", "file", "-f", fmt]
    if fmt == "mov":
        args += ["-enable_drefs", "0"]
    if start > 0:
        args += ["-ss", f"{math.floor(start * 1e6) / 1e6:.6f}"]
    if duration is not None:
        args += ["-t", f"{max(duration, 1e-6):.6f}"]
    return args + ["-i", "file:" + str(Path(path).resolve())]


@dataclass(frozen=True)
class MediaFacts:
    """What a media file holds, read from its header once: format, duration and the video grid."""

    format: str
    duration: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frames: int = 0          # round(duration × fps): the frames every decode of it yields
    codec: str = ""
    pix_fmt: str = ""
    audio_rate: int = 0      # the first audio stream's sample rate (0: none)
    audio_channels: int = 0  # and its channels

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _header(path: Path, fmt: str) -> str:
    try:
        res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args(path, fmt)],
                             capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise MediaRefused(path.name, "took too long to read (its header)") from None
    return res.stderr


def _packets(path: Path, fmt: str) -> int:
    """Video packets in a file, by stream copy (demuxed, not decoded), bounded in time."""
    try:
        res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args(path, fmt),
                              "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
                             capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise MediaRefused(path.name, "took too long to read (counting its frames)") from None
    counts = re.findall(r"frame=\s*(\d+)", res.stderr)
    return int(counts[-1]) if counts else 0


def probe(path: str | Path, name: str | None = None) -> MediaFacts:
    """The facts of a media file (one header read, no decode); `MediaRefused` naming it otherwise."""
    p = Path(path)
    name = name or p.name
    fmt = sniff(p, name)
    text = _header(p, fmt)
    has_audio = bool(re.search(r"Stream #\d+:\d+.*Audio:", text))
    vid = re.search(r"Stream #\d+:\d+.*Video: (\w+).*?, (\d{1,5})x(\d{1,5})", text)
    has_video = bool(vid) and not re.search(r"Video:.*\(attached pic\)", text)
    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    if not has_video and not has_audio:
        log.info("no stream in %s: %s", p, text.strip()[-400:])
        raise MediaRefused(name, "holds no audio or video stream the studio can read")
    ar, ac = _audio_layout(text)
    if not has_video:
        return MediaFacts(fmt, round(duration, 4), False, True, audio_rate=ar, audio_channels=ac)
    w, h = int(vid.group(2)), int(vid.group(3))
    fps_m = re.search(r"([\d.]+) fps", text) or re.search(r"([\d.]+) tbr", text)
    fps = float(fps_m.group(1)) if fps_m else 0.0
    if duration <= 0 and fps > 0:   # GIF has no duration in its header: count its packets instead
        duration = _packets(p, fmt) / fps
    if duration <= 0 or fps <= 0 or w < 1 or h < 1:
        raise MediaRefused(name, "has no readable duration, frame rate or size")
    frames = max(1, int(round(duration * fps)))
    pm = re.search(r"Video: \w+[^,]*, ([a-z0-9]+)(?:\([^)]*\))?,", text)
    return MediaFacts(fmt, round(duration, 4), True, has_audio, w, h, round(fps, 6), frames, vid.group(1),
                      pm.group(1) if pm else "", ar, ac)


def _audio_layout(text: str) -> tuple[int, int]:
    """(rate, channels) of the first audio stream in an ffmpeg header listing; (0, 0) without one."""
    m = re.search(r"Stream #\d+:\d+.*Audio: [^,]+, (\d+) Hz, ([^,\n]+)", text)
    if not m:
        return 0, 0
    lay = m.group(2).strip().split("(")[0].strip()
    named = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "7.1": 8}
    n = named.get(lay) or int((re.match(r"(\d+) channels", lay) or [0, 2])[1])
    return int(m.group(1)), n


def read_frames(path: str | Path, facts: MediaFacts | None = None, *, start: int = 0,
                count: int | None = None, fmt: str | None = None) -> np.ndarray:
    """Frames `start` .. `start + count - 1` of a video's constant-rate grid (RGB uint8 T×H×W×3).

    The decoder seeks to `start` and stops after `count` frames; a short decode (variable frame
    rate, a truncated file) is padded with its last frame, so exactly `count` frames come back.
    """
    p = Path(path)
    f = facts or probe(p)
    if not f.has_video:
        raise MediaRefused(p.name, "holds no video stream")
    count = f.frames - start if count is None else count
    if start < 0 or count < 1 or start + count > f.frames:
        raise ValueError(f"frames {start}..{start + count - 1} are outside {p.name}'s {f.frames} frames")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
           *input_args(p, fmt or f.format, start=start / f.fps),
           "-map", "0:v:0", "-vf", f"fps={f.fps!r}", "-frames:v", str(count),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = f.width * f.height * 3
    out = np.empty((count, f.height, f.width, 3), np.uint8)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        n = 0
        try:
            while n < count:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                out[n] = np.frombuffer(buf, np.uint8).reshape(f.height, f.width, 3)
                n += 1
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace")
            proc.wait()
    if n == 0:
        log.info("no frames decoded from %s: %s", p, err.strip()[-400:])
        raise MediaRefused(p.name, "gave no video frames when decoded")
    if n < count:
        out[n:] = out[n - 1]
    return out


def decode_audio(path: str | Path, sr: int = 44100, channels: int = 2, *, start: float = 0.0,
                 duration: float | None = None, name: str | None = None) -> np.ndarray:
    """Sound from `start` for at most `duration` seconds (None: to the end) as float32 samples × channels.

    Only that span is decoded.  An empty result (start past the end) is a (0, channels) array.
    """
    p = Path(path)
    name = name or p.name
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", *input_args(p, start=start, duration=duration),
           "-vn", "-f", "f32le", "-ac", str(channels), "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        log.info("audio decode of %s failed: %s", p, proc.stderr.decode(errors="replace").strip()[-400:])
        raise MediaRefused(name, "could not be decoded as audio")
    return np.frombuffer(proc.stdout, np.float32).reshape(-1, channels)
