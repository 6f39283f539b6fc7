"""Ledger rows read as a few plain words; the details (models, fallbacks, why) are one click away
on the page (an expander) and stay in the API/CLI/manifest as `detail`."""

from __future__ import annotations

from pathlib import Path

import pytest
from apptest_util import fresh_queue  # noqa: F401 (autouse: a fresh job queue per test)
from streamlit.testing.v1 import AppTest

from studio.pipeline import make_ledger
from studio.request import GenerationRequest

ROOT = Path(__file__).resolve().parent.parent
GEN = str(ROOT / "app_pages" / "1_Generate.py")


@pytest.fixture
def weights():
    """RIFE and Real-ESRGAN in the models folder (STUDIO_MODELS_DIR), as `make test` fetches them."""
    from studio.weights import find
    if find("rife-4.25") is None or find("animevideov3-x4") is None:
        pytest.skip("no RIFE/Real-ESRGAN weights in the models folder")


def test_the_carried_upscale_row_is_a_few_words_and_its_detail_keeps_everything(weights):
    req = GenerationRequest(engine="camera", frames=9, width=64, height=64, interpolate=2, upscale=2,
                            upscaler="animevideov3", order="upscale-carry")
    rows = make_ledger(req, "cpu").rows
    carry = next(r for r in rows if r["stage"] == "interpolate-upscaled")
    assert carry["label"] == "interpolate ×2 + upscale ×2"
    assert "flow carried up ×2" in carry["detail"] and "×4 net, area-downscaled" in carry["detail"]
    for r in rows:                                  # every label: a few words, nothing cut
        assert len(r["label"].split()) <= 6 and len(r["label"]) <= 40, r["label"]
        assert r["detail"].startswith(r["label"].split()[0]) or r["stage"] != "encode"
    text = make_ledger(req, "cpu").to_text()
    assert "details:" in text and "interpolate ×2 + upscale ×2: RIFE 4.25 ×2, flow carried up ×2" in text


def test_the_generate_page_shows_short_labels_and_the_details_in_an_expander(weights, photo):
    at = AppTest.from_file(GEN, default_timeout=60).run()
    at.file_uploader(key="gen_upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    at.radio(key="gen_post_interp_mode").set_value("×2").run()
    at.toggle(key="gen_post_up_on").set_value(True).run()
    assert not at.exception, at.exception
    steps = list(at.table[0].value["step"])
    assert any(s.startswith("interpolate ×2") for s in steps) and any("upscale ×2" in s for s in steps)
    assert all(len(s.split()) <= 6 for s in steps), steps
    exp = [e for e in at.expander if e.label == "Details of each step"]
    assert exp, [e.label for e in at.expander]
    body = " ".join(m.value for m in exp[0].markdown)
    assert "RIFE 4.25 ×2" in body and "Real-ESRGAN" in body
