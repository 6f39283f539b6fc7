"""VRAM profiles: estimates from the shipped configs, the `auto` chooser, the OOM fallback order and
the ledger text (CPU only: budgets are passed in)."""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")

from studio.engines import get_engine, memory, profiles  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402

GIB = memory.GIB


def _req(eid="wan-i2v", frames=81, width=832, height=480, mode="auto"):
    eng = get_engine(eid)
    req = GenerationRequest(image="in.png", prompt="a cat", engine=eid, frames=frames, width=width,
                            height=height, steps=4, guidance=5.0, seed=0)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()} | {"memory_mode": mode}
    return req


def test_sizes_of_wan_14b_from_the_shipped_configs():
    s = profiles.sizes(get_engine("wan-i2v"), _req(), "cuda")
    assert s.denoisers == ("transformer",) and s.blocks == 40 and s.hidden == 5120 and s.ffn == 13824
    assert s.tokens == 21 * 30 * 52  # 81 frames -> 21 latent frames; 480x832 / 8 / patch 2
    assert 16.0e9 < s.params["transformer"] / 2 < 17.0e9   # ~16.4B parameters in bf16
    assert 5.5e9 < s.params["text_encoder"] / 2 < 7.0e9    # UMT5-XXL encoder (+ its untied embedding copy)
    est = {p: memory.estimate(p, s) for p in memory.PROFILES}
    # each profile needs less than the one before it (fp8 and model offload aside, see below)
    assert est["full"] > est["fp8_layerwise"] > est["group_block"] > est["group_leaf"] > est["sequential"]
    # measured peaks: test_estimates_cover_the_measured_h200_peaks
    assert est["full"] > est["model_offload"] > est["group_block"]
    assert 45 * GIB < est["full"] < 70 * GIB and est["group_block"] < 12 * GIB


@pytest.mark.parametrize("budget_gb, want", [(200, "full"), (40, "model_offload"), (24, "group_leaf"),
                                             (12, "group_leaf"), (5.0, "group_leaf"), (2.5, "sequential")])
def test_auto_picks_the_fastest_profile_that_fits(budget_gb, want):
    ch = profiles.choice(get_engine("wan-i2v"), _req(), "cuda", budget_bytes=int(budget_gb * GIB))
    assert ch.profile == want, ch.describe()
    if want != "sequential":
        assert ch.peak_bytes <= budget_gb * GIB
    # fp8 storage changes the output: auto takes it only when allowed
    s = profiles.sizes(get_engine("wan-i2v"), _req(), "cuda")
    assert memory.choose("auto", s, int(40 * GIB), allow_output_changing=True).profile == "fp8_layerwise"


def test_smaller_requests_need_less_and_explicit_modes_are_kept():
    eng = get_engine("wan-i2v")
    big = profiles.choice(eng, _req(), "cuda", budget_bytes=int(12 * GIB))
    small = profiles.choice(eng, _req(frames=17, width=416, height=240), "cuda", budget_bytes=int(12 * GIB))
    assert small.estimates["group_block"] < big.estimates["group_block"]
    ch = profiles.choice(eng, _req(mode="sequential_offload"), "cuda", budget_bytes=int(80 * GIB))
    assert ch.profile == "sequential"   # the old name still works
    with pytest.raises(ValueError, match="memory_mode='tiny'"):
        memory.choose("tiny", profiles.sizes(eng, _req(), "cuda"), None)


def test_fallback_order():
    assert memory.next_profile("full") == "model_offload"  # fp8 is output-changing: skipped
    assert memory.next_profile("full", allow_output_changing=True) == "fp8_layerwise"
    assert memory.next_profile("group_block") == "group_leaf"
    assert memory.next_profile("group_leaf") == "sequential"
    assert memory.next_profile("sequential") is None
    for p in memory.PROFILES:  # every fallback needs less memory than the profile it replaces
        s = profiles.sizes(get_engine("wan-i2v"), _req(), "cuda")
        nxt = memory.next_profile(p)
        assert nxt is None or memory.estimate(nxt, s) < memory.estimate(p, s)


def test_ledger_shows_the_profile_and_its_estimated_peak(monkeypatch):
    from studio import pipeline
    monkeypatch.setattr(memory, "free_vram", lambda device: int(12 * GIB) if device == "cuda" else None)
    req = _req()
    req.image = str(__import__("pathlib").Path(__file__).parent / "data" / "astronaut.jpg")
    led = pipeline.make_ledger(req, device="cuda")
    row = led.rows[0]
    assert row["detail"].startswith("wan-i2v [group_leaf, speed exact]: Wan 2.1 I2V")
    assert row["memory"].startswith("group_leaf, est. peak ") and row["memory"].endswith("of 12.0 GiB")
    peak_gib = float(row["memory"].split("est. peak ")[1].split(" GiB")[0])
    assert abs(row["est_memory_mb"] * 1e6 / GIB - peak_gib) < 0.06
    text = led.to_text()
    assert "wan-i2v [group_leaf, speed exact]" in text
    assert f"{row['est_memory_mb']:.0f}" in text
    # on the CPU the ledger says full
    cpu = pipeline.make_ledger(req, device="cpu").rows[0]
    assert cpu["detail"].startswith("wan-i2v [full, speed exact]")


def test_estimates_cover_the_measured_h200_peaks():
    """bench/results/wan_memory_h200.json: each profile's estimate is at or above the measured
    transformer-only peak and at most 1.5× it; `auto` picked a profile that fits 12 GB at <= 1.5×
    the full-VRAM step time."""
    import json
    from pathlib import Path
    path = Path(__file__).parent.parent / "bench" / "results" / "wan_memory_h200.json"
    res = json.loads(path.read_text())
    assert res["device"].startswith("NVIDIA H200")
    ok = [r for r in res["rows"] if r["status"] == "ok"]
    assert {r["profile"] for r in ok} >= {"full", "group_block", "group_leaf", "fp8_layerwise", "stock"}
    for r in ok:
        assert r["peak_gb"] <= r["est_peak_gb"] <= 1.5 * r["peak_gb"], r
    full = next(r for r in ok if r["profile"] == "full" and r["cap_gb"] is None)
    at12 = {r["profile"]: r for r in ok if r["cap_gb"] == 12}
    s = profiles.sizes(get_engine("wan-i2v"), _req(), "cuda")
    pick = memory.choose("auto", s, int(12 * GIB)).profile
    assert pick in at12 and at12[pick]["seconds_per_step"] <= 1.5 * full["seconds_per_step"]
