"""The Generate page's Speed box: each tier's estimated time, or why a tier can't run here."""

from __future__ import annotations

from pathlib import Path

from apptest_util import fresh_queue  # noqa: F401 (an autouse fixture: a fresh job queue per test)
from streamlit.testing.v1 import AppTest

GEN = str(Path(__file__).resolve().parent.parent / "app_pages" / "1_Generate.py")


def test_speed_box_shows_each_tiers_estimate_for_a_dit_engine():
    at = AppTest.from_file(GEN, default_timeout=90).run()
    assert not at.exception
    at.selectbox(key="gen_engine").set_value("wan-i2v").run()
    assert not at.exception
    box = at.selectbox(key="gen_wan-i2v_x_speed")
    assert box.value == "exact" and list(box.options) == ["exact", "fp8", "cache", "fp8+cache", "few_step"]
    cap = [c.value for c in at.caption if c.value.startswith("Estimated engine time by speed tier")]
    assert cap, [c.value for c in at.caption]
    text = cap[0]
    secs = {t: float(text.split(f" {t}: ~")[1].split(" s")[0].replace(",", "")) for t in ("exact", "cache")}
    assert 0 < secs["cache"] < secs["exact"], text  # the cache tier computes fewer steps
    assert "fp8: not here (speed=fp8 computes on fp8 tensor cores, which device 'cpu' does not have)" in text
    assert "few_step: not here (few_step=True" in text  # it needs the user's distill LoRA
    # the camera engine has no tiers: no caption
    at.selectbox(key="gen_engine").set_value("camera").run()
    assert not [c for c in at.caption if c.value.startswith("Estimated engine time")]
