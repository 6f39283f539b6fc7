"""The pages' service layer (studio/ui/service.py) and the StartOn stage behind 'Continue'."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from postfx.anchor import StartOn, fade_weights
from postfx.assemble import read_video, write_video
from studio.clip import Clip
from studio.context import RunContext
from studio.ui import service

ROOT = Path(__file__).resolve().parent.parent


def test_a_text_file_named_mp4_is_refused_in_plain_words():
    with pytest.raises(ValueError) as e:
        service.accept_video("notes.mp4", b"this is not a video\n" * 20)
    msg = str(e.value)
    assert msg == "notes.mp4 is not a video the studio can read"
    assert not list((service.uploads_dir() / "sequence").glob("*"))      # nothing kept


def test_a_real_clip_is_accepted_and_kept_once(tmp_path):
    f = np.zeros((4, 32, 48, 3), np.uint8)
    src = write_video(Clip(f, 8.0), tmp_path / "a.mp4", preset="ultrafast")
    p1 = service.accept_video("a.mp4", src.read_bytes())
    p2 = service.accept_video("a.mp4", src.read_bytes())
    assert p1 == p2 and p1.parent.name == "sequence" and read_video(p1).frames.shape == (4, 32, 48, 3)
    with pytest.raises(ValueError, match=r"^a\.txt: \.txt is not an accepted video type"):
        service.accept_video("a.txt", src.read_bytes())


def test_plain_error_keeps_file_names_and_drops_paths_and_tool_output():
    e = ValueError("clips[0].path='/srv/studio/outputs/uploads/sequence/abc-notes.mp4' is not a readable "
                   "video: ['/srv/x/abc-notes.mp4: Invalid data found when processing input']")
    assert service.plain_error(e) == "clips[0].path='abc-notes.mp4' is not a readable video"
    assert service.plain_error("line one\nffmpeg version 7 ...") == "line one"


def test_start_on_makes_frame_zero_the_start_image_and_fades_out(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (9, 16, 24, 3), dtype=np.uint8)
    start = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    from PIL import Image
    Image.fromarray(start).save(tmp_path / "s.png")
    out = StartOn(image=str(tmp_path / "s.png"), fade=0.5).apply(Clip(frames, 8.0), RunContext()).frames
    assert np.array_equal(out[0], start)
    assert np.array_equal(out[4:], frames[4:])             # 0.5 s at 8 fps: frames 0-3 corrected
    w = fade_weights(9, 8.0, 0.5)
    assert w[0] == 1.0 and 0 < w[2] < 1 and w[4] == 0.0
    other = np.zeros((8, 8, 3), np.uint8)                  # another size: left as it is
    Image.fromarray(other).save(tmp_path / "o.png")
    same = StartOn(image=str(tmp_path / "o.png")).apply(Clip(frames, 8.0), RunContext()).frames
    assert np.array_equal(same, frames)


def test_continuation_with_upscaling_starts_exactly_on_the_last_frame(tmp_path, photo):
    from studio.pipeline import generate
    from studio.request import GenerationRequest
    kw = {"prompt": "pan right", "frames": 5, "width": 64, "height": 48, "interpolate": 2, "upscale": 2,
          "upscaler": "lanczos", "codec": "png"}
    first = generate(GenerationRequest(image=str(photo), **kw), out=str(tmp_path / "a") + "/")
    last = read_video(first.output).frames[-1]
    png = tmp_path / "last.png"
    from PIL import Image
    Image.fromarray(last).save(png)
    nxt = generate(GenerationRequest(image=str(png), extra={"anchor_start": True}, **kw),
                   out=str(tmp_path / "b") + "/")
    frames = read_video(nxt.output).frames
    assert np.array_equal(frames[0], last)                 # lossless output: the seam is exact
    assert [s["stage"] for s in nxt.manifest["stages"]][-1] == "start_on"
    plain = generate(GenerationRequest(image=str(png), **kw), out=str(tmp_path / "c") + "/")
    assert "start_on" not in [s["stage"] for s in plain.manifest["stages"]]   # only when continuing


def test_upscaler_help_names_every_model():
    from studio.params import SPEC
    text = service.upscaler_notes(SPEC["upscaler"])
    for m in SPEC["upscaler"].choices:
        assert f"**{m}**" in text


def test_pages_reach_the_core_only_through_the_service_layer():
    """app_pages/ and studio/ui/ (LoRA page aside) import no postfx module and not the weights registry."""
    files = [*ROOT.glob("app_pages/*.py"), ROOT / "app.py",
             *(p for p in (ROOT / "studio" / "ui").glob("*.py") if p.name not in ("service.py", "loras.py"))]
    bad = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                mod, names = "", [a.name for a in node.names]
            else:
                continue
            for target in [mod, *(f"{mod}.{n}" if mod else n for n in names)]:
                t = target.lstrip(".")
                if t.startswith(("postfx", "weights", "studio.weights", "pipeline", "studio.pipeline",
                                 "sequence", "studio.sequence", "engines", "studio.engines")):
                    bad.append(f"{f.relative_to(ROOT)}: {target}")
    assert not bad, bad


def test_a_rerun_is_named_with_one_timestamp(photo):
    import re

    from studio.pipeline import generate, rerun
    from studio.request import GenerationRequest
    first = generate(GenerationRequest(image=str(photo), prompt="zoom in", frames=3, width=32, height=32))
    again = rerun(first.manifest_path, {"interpolate": 2})
    assert len(re.findall(r"\d{8}-\d{6}", again.output.name)) == 1, again.output.name
    assert re.fullmatch(r"\d{8}-\d{6}-zoom-in-rerun-[0-9a-f]{6}\.mp4", again.output.name), again.output.name
