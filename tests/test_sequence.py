"""Sequences: spec validation, timeline lengths, presets, conforming, transitions, cancel."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from postfx.assemble import probe_video, read_video, write_video
from studio.clip import Clip
from studio.context import Cancelled, RunContext
from studio.sequence import load_spec, plan_sequence, render_sequence
from studio.sequence.conform import fit_geometry, source_indices
from studio.sequence.transitions import blend


def make_clip(path: Path | str, n: int, fps: float, w: int, h: int, color=(200, 40, 40)) -> Path:
    """A synthetic clip: a flat colour whose red channel steps with the frame index."""
    f = np.zeros((n, h, w, 3), np.uint8)
    f[:] = color
    f[..., 0] = (np.arange(n, dtype=np.uint8) * 9 + 20)[:, None, None]
    return write_video(Clip(f, fps), path, preset="ultrafast")


def spec_for(clips: list[dict], size=(64, 48), fps=24.0, **out) -> dict:
    return {"version": 1, "output": {"size": list(size), "fps": fps, "encoder_preset": "ultrafast", **out},
            "clips": clips}


# --- spec validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["clips"][2]["transition"].update(duration=-1),
     "clips[2].transition.duration=-1 must be ≥ 0"),
    (lambda d: d["clips"][1].update(speed=0), "clips[1].speed=0 must be ≥ 0.05"),
    (lambda d: d["clips"][0].update(trim_in=2, trim_out=1), "clips[0].trim_out=1 must be > trim_in=2"),
    (lambda d: d["clips"][0]["transition"].update(type="spin"), "clips[0].transition.type='spin' must be"),
    (lambda d: d["clips"][0].update(colour="red"), "clips[0].colour is not a known field"),
    (lambda d: d["output"].update(size=[65, 48]), "output.size width=65 must be an even number"),
    (lambda d: d["output"].update(preset="4:3"), "output.preset='4:3' must be one of 16:9, 9:16, 1:1"),
    (lambda d: d["clips"][1]["transition"].update(type="cut", duration=0.5),
     "clips[1].transition.duration=0.5 must be 0 for a cut"),
    (lambda d: d["clips"][2]["transition"].update(type="crossfade", duration=0.5),
     "clips[2].transition.type='crossfade' must be 'cut'"),
    (lambda d: d.update(version=2), "version=2 must be 1"),
    (lambda d: d["clips"].insert(0, {"title": "Hi", "over": {"clip": 0}}),
     "clips[0].over.clip=0 must be the index of a video clip"),
    (lambda d: d.update(audio={"path": "a.wav", "volume": 9}), "audio.volume=9 must be ≤ 4"),
])
def test_bad_fields_are_named_by_path(mutate, message):
    d = spec_for([{"path": "a.mp4", "transition": {"type": "crossfade", "duration": 0.5}},
                  {"path": "b.mp4", "transition": {"type": "wipe_left", "duration": 0.5}},
                  {"path": "c.mp4", "transition": {"type": "cut"}}])
    load_spec(d)  # the unmutated spec is valid
    mutate(d)
    with pytest.raises(ValueError) as e:
        load_spec(d)
    assert message in str(e.value)


def test_spec_roundtrip_and_example_file():
    ex = Path(__file__).resolve().parent.parent / "docs" / "sequence-example.json"
    spec = load_spec(ex)
    assert (spec.output.width, spec.output.height) == (1080, 1920)
    assert load_spec(spec.to_dict(), base_dir=spec.base_dir).to_dict() == spec.to_dict()
    assert spec.clips[0].is_title and spec.clips[1].path.endswith(".mp4")


# --- timeline numbers ----------------------------------------------------------------------------

def test_three_clips_two_crossfades_give_sum_minus_one_second(tmp_path):
    lengths = (1.0, 1.5, 2.0)   # a, b, c in seconds, at different source fps
    paths = [make_clip(tmp_path / f"{i}.mp4", int(s * fps), fps, 48, 32)
             for i, (s, fps) in enumerate(zip(lengths, (8, 12, 10), strict=True))]
    clips = [{"path": str(p), "transition": {"type": "crossfade", "duration": 0.5}} for p in paths]
    clips[-1]["transition"] = {"type": "cut"}
    out = render_sequence(spec_for(clips), tmp_path / "seq.mp4")
    info = probe_video(out)
    expect = sum(lengths) - 1.0
    assert abs(info["frames"] / info["fps"] - expect) <= 1 / 24 + 1e-9
    assert abs(info["duration"] - expect) <= 1 / 24 + 1e-9
    assert (info["width"], info["height"]) == (64, 48)
    # the crossfade's middle frame is half of each clip: green 40 in both, blue 40 → ~40
    frames = read_video(out).frames
    k = 12
    mid = 24 - k + (k // 2)  # entry 1 starts at 24 - 12 = frame 12; overlap frame 6 of 12
    a_last, b_first = frames[11].astype(float), frames[24].astype(float)
    p = 7 / 13
    want = a_last * (1 - p) + b_first * p
    assert np.abs(frames[mid].astype(float) - want)[8:-8, 8:-8].mean() < 4


def test_916_preset_resolution(tmp_path):
    src = make_clip(tmp_path / "a.mp4", 2, 8, 48, 32)
    spec = load_spec({"version": 1, "output": {"preset": "9:16", "fps": 8, "encoder_preset": "ultrafast"},
                      "clips": [{"path": str(src)}]})
    plan = plan_sequence(spec, tmp_path / "v.mp4")
    assert (plan.width, plan.height, plan.frames) == (1080, 1920, 2)
    info = probe_video(render_sequence(spec, tmp_path / "v.mp4"))
    assert (info["width"], info["height"], info["frames"]) == (1080, 1920, 2)
    for preset, size in (("16:9", (1920, 1080)), ("1:1", (1080, 1080))):
        s = load_spec({"version": 1, "output": {"preset": preset}, "clips": [{"path": str(src)}]})
        assert (s.output.width, s.output.height) == size


# --- conforming ----------------------------------------------------------------------------------

def test_sample_and_hold_indices():
    assert source_indices(9, 24, 8, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert source_indices(4, 8, 24, 12).tolist() == [0, 3, 6, 9]
    assert source_indices(4, 8, 8, 20, trim_in=0.5, speed=2).tolist() == [4, 6, 8, 10]
    assert fit_geometry(96, 64, 64, 64, "letterbox") == (64, 43, 0, 10)
    assert fit_geometry(96, 64, 64, 64, "crop") == (96, 64, -16, 0)


@pytest.mark.parametrize("fit", ["letterbox", "crop"])
def test_mixed_sizes_and_fps_are_conformed(tmp_path, fit):
    wide = tmp_path / "wide/"
    tall = tmp_path / "tall/"
    make_clip(str(wide) + "/", 4, 8, 96, 64, (0, 200, 0))     # 3:2 at 8 fps, lossless PNG frames
    make_clip(str(tall) + "/", 6, 12, 64, 96, (0, 0, 200))    # 2:3 at 12 fps
    pad = (255, 0, 255)
    spec = spec_for([{"path": str(wide)}, {"path": str(tall)}], size=(64, 64), fps=24, fit=fit,
                    pad_color="#ff00ff")
    out = render_sequence(spec, str(tmp_path / "out") + "/")
    clip = read_video(out)
    f = clip.frames
    assert f.shape == (24, 64, 64, 3) and clip.fps == 24.0   # 0.5 s + 0.5 s at 24 fps
    # 8 → 24 fps: each source frame three times; 12 → 24: twice; the red channel tells them apart
    assert [int(x) for x in f[:12, 32, 32, 0]] == [20] * 3 + [29] * 3 + [38] * 3 + [47] * 3
    assert [int(x) for x in f[12:24:2, 32, 32, 0]] == [20, 29, 38, 47, 56, 65]
    assert (f[12:24:2] == f[13:24:2]).all()
    is_pad = np.all(f == np.array(pad, np.uint8), axis=-1)
    if fit == "letterbox":
        # wide: 96×64 → 64×43, bars of 10 rows above and 11 below; tall: 43×64, bars of 10 | 11 columns
        assert is_pad[0, :10].all() and is_pad[0, 53:].all() and not is_pad[0, 10:53].any()
        assert is_pad[12, :, :10].all() and is_pad[12, :, 53:].all() and not is_pad[12, :, 10:53].any()
    else:
        assert not is_pad.any()
        assert (f[0, :, :, 1] == 200).all() and (f[12, :, :, 2] == 200).all()


# --- transitions ---------------------------------------------------------------------------------

def test_transition_frames():
    a = np.full((4, 8, 3), 100, np.uint8)
    b = np.full((4, 8, 3), 200, np.uint8)
    assert (blend("crossfade", a, b, 0.25) == 125).all()
    assert (blend("fade_black", a, b, 0.5) == 0).all() and (blend("fade_white", a, b, 0.5) == 255).all()
    assert (blend("fade_black", a, b, 0.25) == 50).all() and (blend("fade_black", a, b, 0.75) == 100).all()
    s = blend("slide_left", a, b, 0.25)            # b comes in from the right: 2 of 8 columns
    assert (s[:, :6] == 100).all() and (s[:, 6:] == 200).all()
    s = blend("slide_right", a, b, 0.25)
    assert (s[:, :2] == 200).all() and (s[:, 2:] == 100).all()
    s = blend("slide_up", a, b, 0.5)
    assert (s[:2] == 100).all() and (s[2:] == 200).all()
    s = blend("slide_down", a, b, 0.5)
    assert (s[:2] == 200).all() and (s[2:] == 100).all()
    s = blend("wipe_left", a, b, 0.75)
    assert (s[:, :2] == 100).all() and (s[:, 2:] == 200).all()
    s = blend("wipe_right", a, b, 0.75)
    assert (s[:, :6] == 200).all() and (s[:, 6:] == 100).all()


def test_title_card_and_fade_through_black(tmp_path):
    src = make_clip(str(tmp_path / "a") + "/", 8, 8, 64, 48, (0, 220, 0))
    spec = spec_for([{"title": "Hello", "duration": 1.0, "background": "#202020",
                      "transition": {"type": "fade_black", "duration": 0.5}},
                     {"path": str(src)}], fps=8)
    f = read_video(render_sequence(spec, str(tmp_path / "o") + "/")).frames
    assert f.shape[0] == 8 + 8 - 4
    bg = np.all(f[0] == 0x20, axis=-1)
    assert 0.5 < bg.mean() < 1.0 and (f[0][~bg] > 0x20).any()   # text drawn on the colour
    dark = f[4:8].reshape(4, -1).mean(axis=1)                     # overlap frames 4..7
    assert dark[1] < dark[0] and dark[2] < 20 and dark[3] > dark[2]
    assert (f[8:, 24, 32, 1] == 220).all()


# --- failures before encoding, cancel ------------------------------------------------------------

def test_missing_file_fails_before_encoding(tmp_path):
    a = make_clip(tmp_path / "a.mp4", 4, 8, 48, 32)
    spec = spec_for([{"path": str(a)}, {"path": str(tmp_path / "nope.mp4")}])
    out = tmp_path / "x.mp4"
    with pytest.raises(ValueError, match=r"clips\[1\]\.path='.*nope\.mp4' does not exist"):
        render_sequence(spec, out)
    assert not out.exists() and list(tmp_path.iterdir()) == [a]


def test_too_long_transition_fails_before_encoding(tmp_path):
    a = make_clip(tmp_path / "a.mp4", 4, 8, 48, 32)            # 0.5 s
    spec = spec_for([{"path": str(a), "transition": {"type": "crossfade", "duration": 1.0}},
                     {"path": str(a)}])
    with pytest.raises(ValueError, match=r"clips\[0\]\.transition\.duration=1 is longer than"):
        render_sequence(spec, tmp_path / "x.mp4")
    spec["clips"][0] = {"path": str(a), "trim_out": 3.0}
    with pytest.raises(ValueError, match=r"clips\[0\]\.trim_out=3 is past the end of the clip \(0\.500 s\)"):
        render_sequence(spec, tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_cancel_leaves_no_partial_file(tmp_path, monkeypatch):
    a = make_clip(tmp_path / "a.mp4", 8, 8, 48, 32)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    ctx = RunContext()
    seen = []

    def progress(stage, i, n):
        seen.append(stage)
        if stage == "encode" and i == 3:
            ctx.cancel.set()

    ctx.progress = progress
    spec = spec_for([{"path": str(a), "transition": {"type": "crossfade", "duration": 0.25}},
                     {"path": str(a)}])
    out_dir = tmp_path / "out"
    with pytest.raises(Cancelled):
        render_sequence(spec, out_dir / "x.mp4", ctx)
    assert "sequence" in seen and "encode" in seen
    assert list(out_dir.iterdir()) == [] and list(temp.iterdir()) == []


def test_rife_resample_makes_in_between_frames():
    from studio.sequence.conform import retime

    f = np.zeros((4, 32, 48, 3), np.uint8)
    for i in range(4):
        f[i, :, 8 + 8 * i:16 + 8 * i] = 255          # a bar moving 8 px per frame
    clip = Clip(f, 8.0)
    held = retime(clip, 24.0, 0.0, None, 1.0, "nearest", RunContext())
    interp = retime(clip, 24.0, 0.0, None, 1.0, "rife", RunContext())
    edge = lambda frames: [int(np.argmax(x[16, :, 0] > 128)) for x in frames]
    assert edge(held)[:7] == [8, 8, 8, 16, 16, 16, 24]
    e = edge(interp)
    assert len(e) == 12 and e[0] == 8 and e[3] == 16 and e[6] == 24
    assert 8 < e[1] < e[2] < 16 and 16 < e[4] < e[5] < 24   # motion between the source frames


def test_title_over_a_dimmed_frame(tmp_path):
    src = make_clip(str(tmp_path / "a") + "/", 8, 8, 64, 48, (0, 200, 0))
    spec = spec_for([{"path": str(src)},
                     {"title": "Bye", "duration": 0.5, "over": {"clip": 0, "time": 0.5, "dim": 0.5}}], fps=8)
    f = read_video(render_sequence(spec, str(tmp_path / "o") + "/")).frames
    assert f.shape[0] == 8 + 4
    card = f[8]
    assert tuple(card[2, 2]) == (28, 100, 0)       # frame 4 of the clip (red 20 + 4·9 = 56), halved
    assert (card[..., 2] > 120).sum() > 10          # white text on it (the frame has no blue)


def test_large_outputs_compose_in_a_memory_mapped_temp_file(tmp_path, monkeypatch):
    import studio.sequence.render as render_mod

    a = make_clip(str(tmp_path / "a") + "/", 6, 8, 48, 32)
    spec = spec_for([{"path": str(a), "transition": {"type": "slide_up", "duration": 0.25}},
                     {"path": str(a)}], fps=8)
    in_ram = read_video(render_sequence(spec, str(tmp_path / "ram") + "/")).frames
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(render_mod, "MEMORY_LIMIT_BYTES", 0)
    seen = []
    real = render_mod._buffer
    monkeypatch.setattr(render_mod, "_buffer", lambda *a: seen.append(real(*a)) or seen[-1])
    mapped = read_video(render_sequence(spec, str(tmp_path / "map") + "/")).frames
    assert isinstance(seen[0], np.memmap) and np.array_equal(mapped, in_ram) and mapped.shape[0] == 10
    assert list(temp.iterdir()) == []
