"""The CLI end to end: the issue's acceptance command, exit codes, bad inputs, --from-manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from postfx.assemble import mp4_atom_order, probe_video, read_video

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=240)


def test_acceptance_command_and_from_manifest(tmp_path, photo):
    out = tmp_path / "clip.mp4"
    r = run_cli("generate", str(photo), "--prompt", "camera slowly zooming in", "--frames", "16",
                "--fps", "8", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    # the ledger is printed first, then the run; a progress bar went to stderr
    assert r.stdout.index("camera") < r.stdout.index("wrote")
    assert "encode" in r.stderr and "16/16" in r.stderr
    info = probe_video(out)
    assert info["frames"] == 16 and abs(info["fps"] - 8.0) < 1e-6
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    order = mp4_atom_order(out)
    assert order.index("moov") < order.index("mdat")
    m = json.loads((tmp_path / "clip.mp4.json").read_text())
    assert m["ledger"]["final"] == {"frames": 16, "fps": 8.0, "width": 512, "height": 512}
    assert m["input"]["sha256"] and m["seed"] == 0 and m["engine"]["id"] == "camera"
    assert "engine" in m["timings"] and "encode" in m["timings"]
    assert m["timings"]["total"] >= m["timings"]["engine"] + m["timings"]["encode"]
    assert m["versions"]["torch"].startswith("2.")
    # reproduce from the manifest
    out2 = tmp_path / "again.mp4"
    r2 = run_cli("generate", "--from-manifest", str(tmp_path / "clip.mp4.json"), "--out", str(out2),
                 "--device", "cpu", "--quiet")
    assert r2.returncode == 0, r2.stderr
    a, b = read_video(out).frames, read_video(out2).frames
    assert a.shape == b.shape and np.array_equal(a, b)


def _bad_files(d: Path) -> dict[str, Path]:
    good = d / "good.png"
    Image.new("RGB", (64, 48), (200, 100, 50)).save(good)
    jpg = d / "good.jpg"
    Image.new("RGB", (256, 256), (10, 200, 30)).save(jpg, quality=95)
    files = {
        "empty": d / "empty.png",
        "truncated": d / "trunc.jpg",
        "corrupt": d / "corrupt.png",
        "not-image": d / "notes.txt",
        "aspect": d / "thin.png",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    raw = bytearray(good.read_bytes())
    raw[60:80] = b"\x00" * 20
    files["corrupt"].write_bytes(bytes(raw))
    files["not-image"].write_text("hello, not an image\n")
    Image.new("RGB", (4000, 20), (1, 2, 3)).save(files["aspect"])
    files["bomb"] = d / "bomb.png"
    files["bomb"].write_bytes(_png_claiming(50000, 50000))
    return files


def _png_claiming(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w×h pixels (a decompression bomb's calling card)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_bad_images_exit_2_no_output(tmp_path):
    for kind, f in _bad_files(tmp_path).items():
        out = tmp_path / f"out-{kind}.mp4"
        r = run_cli("generate", str(f), "--prompt", "zoom in", "--frames", "4", "--width", "64",
                    "--height", "64", "--out", str(out), "--quiet")
        assert r.returncode == 2, (kind, r.stderr)
        assert f.name in r.stderr, (kind, r.stderr)
        assert "Traceback" not in r.stderr
        if kind in ("empty", "not-image", "aspect", "bomb"):   # refused before the ledger is printed
            assert "encode" not in r.stdout, (kind, r.stdout)
        assert not out.exists() and not Path(str(out) + ".json").exists()


@pytest.mark.parametrize("args,needle", [
    (["--frames", "1"], "frames=1 is below the minimum 2"),
    (["--width", "63"], "width=63"),
    (["--engine", "nope"], "engine='nope' is not one of"),
    (["--upscale", "7"], "upscale=7 is not one of"),
    (["--interpolate", "2", "--target-fps", "24"], "not both"),
])
def test_bad_values_exit_2(tmp_path, photo, args, needle):
    out = tmp_path / "x.mp4"
    r = run_cli("generate", str(photo), "--prompt", "pan left", "--out", str(out), "--quiet", *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not out.exists()


def test_missing_image_and_plan_only(tmp_path, photo):
    r = run_cli("generate", str(tmp_path / "nope.jpg"), "--prompt", "x")
    assert r.returncode == 2 and "nope.jpg" in r.stderr
    r = run_cli("generate", str(photo), "--prompt", "zoom in", "--interpolate", "2", "--plan",
                "--out", str(tmp_path / "p.mp4"))
    assert r.returncode == 0 and "31" in r.stdout and not (tmp_path / "p.mp4").exists()


def test_models_lists_engines_and_weights():
    r = run_cli("models")
    assert r.returncode == 0
    assert "camera" in r.stdout and "ready" in r.stdout
    assert "rife-4.25" in r.stdout
