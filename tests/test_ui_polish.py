"""UI polish in AppTest: the Gallery lists sequence exports (label, player, delete, open in Sequence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from apptest_util import fresh_queue  # noqa: F401 (an autouse fixture: a fresh job queue per test)
from streamlit.testing.v1 import AppTest

from postfx.assemble import write_video
from studio.clip import Clip
from studio.outputs import list_outputs, outputs_dir, write_manifest

PAGES = Path(__file__).resolve().parent.parent / "app_pages"


def _clip(folder: Path, name: str, frames: int, color) -> Path:
    f = np.zeros((frames, 32, 48, 3), np.uint8)
    f[:] = color
    return write_video(Clip(f, 8.0), folder / name, preset="ultrafast")


def _sequence_export(tmp_path: Path) -> Path:
    """A real sequence export in the outputs folder: clip a (1 s) ⨯fade⨯ title (1 s) | clip b (1.5 s)."""
    from studio.sequence.render import render_sequence
    src = tmp_path / "src"
    _clip(src, "a.mp4", 8, (200, 30, 30))
    _clip(src, "b.mp4", 12, (30, 200, 30))
    spec = {"version": 1,
            "output": {"size": [48, 32], "fps": 8.0, "encoder_preset": "ultrafast"},
            "clips": [{"path": "a.mp4", "transition": {"type": "crossfade", "duration": 0.5}},
                      {"title": "Middle", "duration": 1.0,
                       "transition": {"type": "fade_black", "duration": 0.25}},
                      {"path": "b.mp4", "trim_in": 0.5}]}
    from studio.sequence.spec import load_spec
    return render_sequence(load_spec(spec, base_dir=src), outputs_dir() / "seq-export.mp4")


def test_gallery_lists_opens_and_deletes_a_sequence_export(tmp_path):
    out = _sequence_export(tmp_path)
    gen = _clip(outputs_dir(), "gen.mp4", 4, (10, 10, 200))
    write_manifest(gen, {"kind": "studio-manifest", "version": 1, "request": {"prompt": "zoom in"}})
    # generation-only callers are unchanged: the sequence is listed only when asked for
    assert [r.path.name for r in list_outputs()] == ["gen.mp4"]
    at = AppTest.from_file(str(PAGES / "3_Gallery.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    assert "2 of 2 outputs" in [c.value for c in at.caption]
    # 1 + 1 + 1 - 0.5 - 0.25 = 2.25 s; transitions in timeline order
    label = "Sequence · 3 shots (2 clips, 1 title) · 2.25 s · crossfade, fade_black"
    assert f"**🎞️ {label}**" in [m.value for m in at.markdown]
    assert any(out.name in c.value for c in at.caption)
    assert len(at.get("image")) == 2                                  # both thumbnails
    # "sequence" is an engine filter, and the text filter searches the entry labels
    at.multiselect(key="gal_engines").set_value(["sequence"]).run()
    assert "1 of 2 outputs" in [c.value for c in at.caption]
    at.multiselect(key="gal_engines").set_value([]).run()
    at.text_input(key="gal_text").set_value("middle").run()
    assert "1 of 2 outputs" in [c.value for c in at.caption]
    at.text_input(key="gal_text").set_value("").run()
    # open: player, the facts line and the timeline table
    at.button(key=f"open_{out.name}").click().run()
    assert not at.exception
    assert len(at.get("video")) == 1
    assert f"{label} · 48×32 · 8 fps · h264" in [c.value for c in at.caption]
    table = at.dataframe[0].value
    assert list(table["entry"]) == ["a.mp4", "title: Middle", "b.mp4"]
    assert list(table["in"]) == ["cut", "crossfade", "fade_black"]
    assert list(table["seconds"]) == [1.0, 1.0, 1.0]
    # delete with confirmation removes the file and its manifest, and leaves the other output
    at.button(key=f"del_{out.name}").click().run()
    assert any(w.value == f"Delete {out.name} and its manifest?" for w in at.warning)
    assert out.exists()
    at.button(key=f"yes_{out.name}").click().run()
    assert not out.exists() and not Path(str(out) + ".json").exists() and gen.exists()
    assert "1 of 1 outputs" in [c.value for c in at.caption]


def test_open_in_sequence_loads_the_spec_back(tmp_path):
    out = _sequence_export(tmp_path)
    # from the app's entry point, as a user navigates (switch_page paths are relative to it)
    at = AppTest.from_file(str(PAGES.parent / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/3_Gallery.py").run()
    at.button(key=f"open_{out.name}").click().run()
    at.button(key="gal_open_seq").click().run()
    assert not at.exception, at.exception
    items = at.session_state["seq_items"]
    # the Sequence page drew the loaded timeline: clip paths resolved against the export's base_dir
    names = [Path(i["path"]).name if "path" in i else i["title"] for i in items]
    assert names == ["a.mp4", "Middle", "b.mp4"]
    assert Path(items[0]["path"]).is_absolute() and Path(items[0]["path"]).is_file()
    assert items[0]["transition"] == {"type": "crossfade", "duration": 0.5}
    assert items[2]["trim_in"] == 0.5
    assert at.session_state["seq_custom_size"] is True
    ss = at.session_state
    assert (ss["seq_w"], ss["seq_h"], ss["seq_fps"]) == (48, 32, 8.0)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Duration"] == "2.25 s" and metrics["Frames"] == "18" and metrics["Size"] == "48×32"
    plan = at.dataframe[0].value                                     # the page's plan table, 3 columns
    assert list(plan.columns) == ["entry", "time (s)", "from previous"]
    assert list(plan["time (s)"]) == ["0.00–1.00", "0.50–1.50", "1.25–2.25"]
    assert list(plan["from previous"]) == ["—", "crossfade 0.5 s", "fade_black 0.25 s"]
    assert '"encoder_preset": "ultrafast"' in at.code[0].value    # kept though the page has no widget for it
    assert not at.error, [e.value for e in at.error]
    assert not at.warning, [w.value for w in at.warning]
