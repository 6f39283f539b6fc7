"""Gallery and pickers: cards that tell an original from its re-run (duration, size, fps), Home's
counts by owner, renaming an output (file + manifest + base clip, all or nothing), the before/after
view, and thumbnails in the Sequence page's clip picker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from apptest_util import fresh_queue  # noqa: F401 (autouse: a fresh job queue per test)
from streamlit.testing.v1 import AppTest

from studio.context import RunContext
from studio.outputs import base_clip_path, list_outputs
from studio.request import GenerationRequest

ROOT = Path(__file__).resolve().parent.parent
GALLERY = str(ROOT / "app_pages" / "3_Gallery.py")
SEQUENCE = str(ROOT / "app_pages" / "2_Sequence.py")


@pytest.fixture
def pair(photo, monkeypatch, tmp_path):
    """A 64×64 camera clip of 4 frames at 8 fps, and its re-run at ×2 interpolation."""
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "no-models"))  # DIS/Lanczos: fast, no weights
    from studio.pipeline import generate, rerun
    orig = generate(GenerationRequest(image=str(photo), prompt="pan right", frames=4, fps=8.0, width=64,
                                      height=64), ctx=RunContext())
    again = rerun(orig.manifest_path, {"interpolate": 2, "upscale": 2}, ctx=RunContext())
    return orig, again


def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def test_gallery_cards_show_duration_size_fps_and_tell_a_rerun_apart(pair):
    orig, again = pair
    at = AppTest.from_file(GALLERY, default_timeout=60).run()
    assert not at.exception, at.exception
    caps = _captions(at)
    assert "0.50 s · 64×64 · 8 fps" in caps
    rerun_cap = next(c for c in caps if c.startswith("0.44 s · 128×128 · 16 fps"))
    assert "×2 interp, ×2 up" in rerun_cap and f"re-run of {orig.output.name}" in rerun_cap


def test_home_counts_jobs_by_owner_for_api_clients():
    from studio.jobs import JobStore
    store = JobStore()
    for owner in ("alice", "alice", "bob"):
        store.add("weights", {"group": "nope"}, owner=owner)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    owners = next(df.value for df in at.dataframe
                  if "owner" in df.value.columns and "queued" in df.value.columns)
    totals = {r["owner"]: sum(int(r[s]) for s in ("queued", "running", "done", "failed", "cancelled"))
              for _, r in owners.iterrows()}
    assert totals == {"alice": 2, "bob": 1}
    jobs = next(df.value for df in at.dataframe if "kind" in df.value.columns)
    assert sorted(jobs["owner"]) == ["alice", "alice", "bob"]


def test_rename_moves_clip_manifest_and_base_together(pair):
    from studio.naming import rename_output
    orig, _ = pair
    old_base = base_clip_path(orig.output)
    assert old_base.is_file()
    new = rename_output(orig.output, "launch day take 2")
    assert new.name == "launch day take 2.mp4" and new.is_file() and not orig.output.exists()
    assert base_clip_path(new).is_file() and not old_base.exists() and not orig.manifest_path.exists()
    m = json.loads(Path(str(new) + ".json").read_text())
    assert m["output"]["path"] == str(new) and m["base_clip"] == "launch day take 2.mp4.base.npz"
    assert m["renamed_from"] == orig.output.name
    from studio.pipeline import rerun  # the renamed output still re-runs from its base
    assert rerun(Path(str(new) + ".json"), {"interpolate": 2}, ctx=RunContext()).output.is_file()
    for bad, why in (("../escape", "must be 1-120 letters"), ("", "must be 1-120"), (".hidden", "starting")):
        with pytest.raises(ValueError, match=why):
            rename_output(new, bad)
    taken = new.with_name("taken.mp4")
    taken.write_bytes(b"x")
    with pytest.raises(ValueError, match="taken.mp4 already exists"):
        rename_output(new, "taken")
    assert new.is_file() and base_clip_path(new).is_file()


def test_a_failed_rename_leaves_the_output_as_it_was(pair, monkeypatch):
    from studio import naming
    orig, _ = pair
    before = sorted(p.name for p in orig.output.parent.iterdir())

    def boom(path, data):
        raise OSError("disk full")
    monkeypatch.setattr(naming, "write_json_atomic", boom)   # the manifest write fails half-way
    with pytest.raises(OSError, match="disk full"):
        naming.rename_output(orig.output, "new name")
    assert sorted(p.name for p in orig.output.parent.iterdir()) == before


def test_gallery_renames_the_opened_output(pair):
    orig, _ = pair
    at = AppTest.from_file(GALLERY, default_timeout=60).run()
    at.button(key=f"open_{orig.output.name}").click().run()
    at.text_input(key=f"gal_name_{orig.output.name}").set_value("my first clip").run()
    at.button(key="gal_rename").click().run()
    assert not at.exception, at.exception
    names = {r.path.name for r in list_outputs()}
    assert "my first clip.mp4" in names and orig.output.name not in names
    assert at.session_state["gallery_open"] == "my first clip.mp4"
    at.text_input(key="gal_name_my first clip.mp4").set_value("bad/name").run()
    at.button(key="gal_rename").click().run()
    assert any("Not renamed: name='bad/name'" in e.value for e in at.error)


def test_before_after_wipe_and_side_by_side_are_the_right_pixels(pair):
    from studio.compare import compare, enlarge, frame_at, load_pair
    _, again = pair
    p = load_pair(again.output, again.manifest_path)
    assert p.before.frames.shape[1:3] == (64, 64) and p.after.frames.shape[1:3] == (128, 128)
    t = 0.25
    b, a = frame_at(p.before, t), frame_at(p.after, t)
    assert np.array_equal(b, p.before.frames[2]) and np.array_equal(a, p.after.frames[4])
    big = enlarge(b, 128, 128)
    assert np.array_equal(big[::2, ::2], b) and np.array_equal(big[1::2, 1::2], b)
    wipe = compare(b, a, "wipe", 0.25)
    assert np.array_equal(wipe[:, :31], big[:, :31]) and np.array_equal(wipe[:, 33:], a[:, 33:])
    assert (wipe[:, 31:33] == 255).all()                          # the split line
    side = compare(b, a, "side by side")
    assert side.shape == (128, 128 + 4 + 128, 3)
    assert np.array_equal(side[:, :128], big) and np.array_equal(side[:, 132:], a)
    with pytest.raises(ValueError, match="mode='blend' is not one of wipe, side by side"):
        compare(b, a, "blend")


def test_gallery_shows_before_after_for_the_opened_output(pair):
    _, again = pair
    at = AppTest.from_file(GALLERY, default_timeout=60).run()
    at.button(key=f"open_{again.output.name}").click().run()
    n = len(at.get("image"))
    at.toggle(key=f"ba_on_gal_{again.output.name}").set_value(True).run()
    assert not at.exception, at.exception
    imgs = at.get("image")
    assert len(imgs) == n + 1
    cap = [c.value for c in at.caption if c.value.startswith("left: before")]
    cap = cap[0] if cap else str(imgs[-1].proto)
    assert cap.startswith("left: before, the base clip 64×64 at 8 fps")
    assert "right: after, 128×128 at 16 fps" in cap
    at.radio(key=f"ba_mode_gal_{again.output.name}").set_value("side by side").run()
    assert not at.exception


def test_the_sequence_clip_picker_shows_thumbnails_and_facts(pair):
    orig, again = pair
    at = AppTest.from_file(SEQUENCE, default_timeout=60).run()
    assert not at.exception, at.exception
    at.selectbox(key="seq_gallery_pick").set_value(str(orig.output)).run()
    assert len(at.get("image")) >= 1 and "0.50 s · 64×64 · 8 fps" in _captions(at)
    at.button(key="seq_add_gallery").click().run()
    at.selectbox(key="seq_gallery_pick").set_value(str(again.output)).run()
    at.button(key="seq_add_gallery").click().run()
    caps = _captions(at)
    assert caps.count("0.50 s · 64×64 · 8 fps") >= 1
    assert any(c.startswith("0.44 s · 128×128 · 16 fps") for c in caps)
    assert len(at.get("image")) >= 3                               # the picker's and one per timeline clip


def test_a_sequence_export_is_renamed_with_its_manifest(tmp_path):
    from studio.naming import rename_output
    from studio.outputs import outputs_dir
    from studio.sequence import render_sequence
    spec = {"version": 1, "output": {"size": [64, 48], "fps": 8.0, "encoder_preset": "ultrafast"},
            "clips": [{"title": "Launch day\nCape Canaveral", "duration": 0.5}]}
    out = render_sequence(spec, outputs_dir() / "seq-a.mp4")
    new = rename_output(out, "launch reel")
    assert new.name == "launch reel.mp4" and new.is_file() and not out.exists()
    m = json.loads(Path(str(new) + ".json").read_text())
    assert m["kind"] == "studio-sequence" and m["output"]["path"] == str(new)
    recs = {r.path.name: r for r in list_outputs(kinds=("studio-sequence",))}
    assert set(recs) == {"launch reel.mp4"}
