"""postfx.media: containers sniffed from an allow-list, decodes locked to them, spans decoded only.

Real ffmpeg on real files: an attacker's playlist-then-MP3 file, a variable-frame-rate video, a
clip whose frames each show their own index.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from postfx import media
from postfx.assemble import decode_audio, probe_video, read_video
from studio.jobs.incoming import PREFIX, incoming_bytes, sweep

RATE = 8000


def ff(*args: str) -> None:
    """Run ffmpeg (lavfi sources only: no input file)."""
    subprocess.run([media.ffmpeg_exe(), "-y", "-v", "error", *args], check=True, timeout=120)


def tone(path: Path, hz: int, seconds: float, codec: str = "libmp3lame") -> Path:
    """A sine tone file."""
    ff("-f", "lavfi", "-i", f"sine=frequency={hz}:duration={seconds}", "-c:a", codec, str(path))
    return path


def peak_hz(samples: np.ndarray) -> float:
    """The strongest frequency in mono samples at RATE."""
    spec = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[spec.argmax()])


def decode_with(args: list[str]) -> np.ndarray:
    """Mono float samples at RATE from ffmpeg input args (empty when ffmpeg gives nothing)."""
    res = subprocess.run([media.ffmpeg_exe(), "-v", "error", *args, "-f", "f32le", "-ac", "1",
                          "-ar", str(RATE), "-"], capture_output=True, timeout=120)
    return np.frombuffer(res.stdout, np.float32)


def attacker_file(tmp_path: Path, secret: Path, name: str = "song.m3u8") -> Path:
    """The issue's file: an HLS playlist naming a server file, followed by real MP3 bytes (1 kHz)."""
    own = tone(tmp_path / "own.mp3", 1000, 1.0)
    evil = tmp_path / name
    evil.write_bytes(b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n" + str(secret).encode()
                     + b"\n#EXT-X-ENDLIST\n" + own.read_bytes())
    return evil


def test_forced_demuxer_cannot_follow_a_playlist(tmp_path):
    secret = tone(tmp_path / "secret.mp3", 440, 2.0)           # the server file the playlist names
    evil = attacker_file(tmp_path, secret)
    # ffmpeg left to guess plays the server file (the attack; the control that proves this test bites)
    guessed = decode_with(["-protocol_whitelist", "file", "-i", str(evil)])
    if len(guessed):
        assert abs(peak_hz(guessed) - 440) < 5, "control: auto-detection should follow the playlist"
    # locked to the MP3 demuxer, the same bytes give only their own sound (1 kHz), never the secret
    forced = decode_with(media.input_args(evil, "mp3"))
    assert len(forced) > 0.9 * RATE and abs(peak_hz(forced) - 1000) < 5
    # and the studio never gets that far: the container is sniffed and refused
    with pytest.raises(media.MediaRefused, match="M3U/HLS playlist"):
        media.sniff(evil)
    with pytest.raises(media.MediaRefused, match="M3U/HLS playlist"):
        decode_audio(evil)


@pytest.mark.parametrize("head, what", [
    (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "ffconcat list"),
    (b"file '/srv/secret.mp3'\n", "concat list"),
    (b"[playlist]\nFile1=/srv/secret.mp3\n", "PLS playlist"),
    (b"<?xml version='1.0'?><MPD><BaseURL>file:///srv/</BaseURL></MPD>", "XML document"),
    (b"v=0\no=- 0 0 IN IP4 127.0.0.1\nm=audio 9 RTP/AVP 0\n", "SDP"),
    (b"http://127.0.0.1:1/secret.mp3\n", "not an image, video or audio file"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image, video or audio file"),   # image2 / image sequences
])
def test_sniff_refuses_files_that_name_other_files(tmp_path, head, what):
    p = tmp_path / "x.mp3"
    p.write_bytes(head + b"\xff\xfb\x90\x64" * 100)
    with pytest.raises(media.MediaRefused, match=what):
        media.sniff(p)


def test_sniff_names_the_allowed_containers(tmp_path):
    assert media.sniff(tone(tmp_path / "a.mp3", 500, 0.3)) == "mp3"
    assert media.sniff(tone(tmp_path / "a.wav", 500, 0.3, "pcm_s16le")) == "wav"
    assert media.sniff(tone(tmp_path / "a.flac", 500, 0.3, "flac")) == "flac"
    assert media.sniff(tone(tmp_path / "a.ogg", 500, 0.3, "libvorbis")) == "ogg"
    assert media.sniff(tone(tmp_path / "a.m4a", 500, 0.3, "aac")) == "mov"
    args = media.input_args(tmp_path / "a.m4a")
    assert args[:6] == ["-protocol_whitelist", "file", "-f", "mov", "-enable_drefs", "0"]
    assert args[-1] == "file:" + str((tmp_path / "a.m4a").resolve())


def test_failed_decode_shows_no_path_and_no_ffmpeg_text(tmp_path):
    bad = tmp_path / "deep" / "server" / "broken.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xde\xad" * 40)
    with pytest.raises(ValueError) as e:
        decode_audio(bad)
    msg = str(e.value)
    assert msg.startswith("broken.wav") and str(bad.parent) not in msg and "0x" not in msg and "@" not in msg


def numbered_clip(path: Path, n: int, fps: int = 10) -> Path:
    """A clip whose frame i is a flat grey of luma 16 + 6·i (`index_of` reads i back)."""
    ff("-f", "lavfi", "-i", f"color=black:size=32x16:rate={fps}", "-frames:v", str(n),
       "-vf", "geq=lum='16+6*N':cb=128:cr=128", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p",
       str(path))
    return path


def index_of(frame: np.ndarray) -> int:
    """The index a `numbered_clip` frame shows (limited-range luma back from RGB)."""
    return round(frame.mean() * 219 / 255 / 6)


def test_span_decode_equals_the_same_frames_of_a_full_decode(tmp_path):
    clip = numbered_clip(tmp_path / "n.mp4", 30)
    full = read_video(clip).frames
    assert full.shape[0] == 30 and [index_of(f) for f in full[:5]] == [0, 1, 2, 3, 4]
    for lo, k in ((0, 3), (12, 5), (29, 1), (7, 20)):
        part = read_video(clip, k, start_frame=lo).frames
        assert part.shape[0] == k
        assert [index_of(f) for f in part] == list(range(lo, lo + k))
        assert np.array_equal(part, full[lo:lo + k])


def test_variable_frame_rate_decodes_to_the_probed_frame_count(tmp_path):
    vfr = tmp_path / "vfr.mp4"   # 40 frames: 20 at 24 fps, a 5 s gap, 20 more
    ff("-f", "lavfi", "-i", "testsrc=size=32x16:rate=24", "-frames:v", "40",
       "-vf", "setpts='if(lt(N,20),N/24/TB,(N+120)/24/TB)'", "-fps_mode", "passthrough",
       "-pix_fmt", "yuv420p", str(vfr))
    info = probe_video(vfr)
    assert info["frames"] == round(info["duration"] * info["fps"])
    assert read_video(vfr).frames.shape[0] == info["frames"]
    assert read_video(vfr, 7, start_frame=info["frames"] - 7).frames.shape[0] == 7


def test_audio_decodes_only_the_span_asked_for(tmp_path):
    wav = tone(tmp_path / "long.wav", 300, 30.0, "pcm_s16le")
    part = decode_audio(wav, RATE, 1, start=10.0, duration=0.5)
    assert part.shape == (RATE // 2, 1)
    with pytest.raises(ValueError, match="no audio samples after 40 s"):
        decode_audio(wav, RATE, 1, start=40.0, duration=1.0)


def test_incoming_leftovers_count_and_are_swept(tmp_path):
    uploads = tmp_path / "alice" / "uploads"
    dead = uploads / f"{PREFIX}999999999-abc"       # no such pid: a killed API's leftover
    live = uploads / f"{PREFIX}1-def"               # pid 1 is alive: an upload in flight elsewhere
    for d, n in ((dead, 3000), (live, 500)):
        d.mkdir(parents=True)
        (d / "file").write_bytes(b"x" * n)
    assert incoming_bytes(uploads) == 3500 and incoming_bytes(uploads, exclude=live) == 3000
    assert sweep(tmp_path) == 1 and not dead.exists() and live.exists()
