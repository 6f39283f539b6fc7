"""Speed tiers (`studio.speed`) on tiny random Wan 2.1, Wan 2.2 A14B and LTX pipelines (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
import tiny_models as tm  # noqa: E402
import torch  # noqa: E402

from studio.context import RunContext  # noqa: E402
from studio.engines import get_engine  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402
from studio.speed.cache import computed_steps  # noqa: E402
from studio.speed.compile import compile_blocks, repeated_blocks  # noqa: E402
from studio.speed.fp8 import RowwiseFp8Linear, quantize_blocks  # noqa: E402

IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
SHAPES = {"wan-i2v": (5, 32, 32), "wan2.2-i2v-a14b": (5, 32, 32), "ltx-video": (9, 32, 32)}


def _pipe(eid: str):
    if eid == "wan2.2-i2v-a14b":
        from test_wan_a14b import tiny_a14b
        return tiny_a14b(0.5)
    return tm.BUILDERS[eid]()


def _req(eid: str, steps: int = 4, **extra) -> GenerationRequest:
    eng = get_engine(eid)
    f, w, h = SHAPES[eid]
    req = GenerationRequest(image="in.png", prompt="a cat", engine=eid, frames=f, width=w, height=h,
                            steps=steps, guidance=3.0, seed=0)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()} | extra
    return req


@pytest.mark.parametrize("eid", list(SHAPES))
def test_exact_is_the_stock_output_and_cache_records_its_steps(eid):
    eng = get_engine(eid)
    assert eng.speed_tiers and eng.extra_spec()["speed"].default == "exact"
    pipe = _pipe(eid)
    steps = 6
    stock = eng.run(pipe, IMAGE, _req(eid, steps), RunContext())
    # exact with the blocks compiled (the CUDA path; `aot_eager` runs the traced graphs on the CPU)
    info = {}
    for m in eng.denoisers(pipe):
        info = compile_blocks(m, backend="aot_eager")
    assert info["compiled_blocks"] == len(repeated_blocks(eng.denoisers(pipe)[0])) > 0
    exact = eng.run(pipe, IMAGE, _req(eid, steps, speed="exact"), RunContext())
    diff = np.abs(exact.frames.astype(int) - stock.frames.astype(int))
    assert diff.max() <= 1, diff.max()
    assert exact.meta["speed"] == {"tier": "exact"}
    # cache: the TaylorSeer schedule computes steps 1-3 then one in five; the rest reuse
    cached = eng.run(pipe, IMAGE, _req(eid, steps, speed="cache"), RunContext())
    sp = cached.meta["speed"]
    assert sp["tier"] == "cache"
    if eid == "wan2.2-i2v-a14b":  # each expert keeps its own schedule, from its first step
        n_hi = int((pipe.scheduler.timesteps >= 500).sum())
        want = computed_steps(n_hi) + [n_hi + s for s in computed_steps(steps - n_hi)]
        assert 0 < n_hi < steps
    else:
        want = [1, 2, 3, 5]
    assert sp["computed_steps"] == want and computed_steps(10) == [1, 2, 3, 5, 10]
    assert sp["reused_steps"] == [i for i in range(1, steps + 1) if i not in want]
    assert sp["partial_steps"] == []
    per = 1 if eid == "ltx-video" else 2  # LTX batches CFG's branches into one call; Wan makes two
    assert sp["denoiser_calls"] == per * steps and sp["calls_computed"] == per * len(want)
    assert cached.frames.shape == stock.frames.shape
    assert not np.array_equal(cached.frames, stock.frames)  # it changed the output
    assert any("speed cache" in n and "changes the output" in n for n in cached.meta["notes"])
    # the cache hooks are gone after the run: exact again gives the exact frames
    again = eng.run(pipe, IMAGE, _req(eid, steps, speed="exact"), RunContext())
    assert np.array_equal(again.frames, exact.frames)


def test_a14b_expert_switch_does_not_recompile():
    eng = get_engine("wan2.2-i2v-a14b")
    pipe = _pipe("wan2.2-i2v-a14b")
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    for m in eng.denoisers(pipe):
        compile_blocks(m, backend="aot_eager")
    eng.run(pipe, IMAGE, _req("wan2.2-i2v-a14b", 6), RunContext())
    frames_compiled = counters["stats"]["unique_graphs"]
    eng.run(pipe, IMAGE, _req("wan2.2-i2v-a14b", 6), RunContext())
    # one graph serves every block of both experts; a second run (and each switch) adds none
    assert frames_compiled == 1, dict(counters["stats"])
    assert counters["stats"]["unique_graphs"] == frames_compiled


def test_fp8_is_refused_without_fp8_tensor_cores_and_unknown_tiers_are_named():
    from studio.pipeline import make_ledger
    req = _req("wan-i2v", 4, speed="fp8")
    with pytest.raises(ValueError, match="fp8 tensor cores.*'cpu'"):
        make_ledger(req, "cpu")
    with pytest.raises(ValueError, match="speed=fp8 computes on fp8 tensor cores"):
        get_engine("wan-i2v").run(_pipe("wan-i2v"), IMAGE, req, RunContext(device="cpu"))
    with pytest.raises(ValueError, match="speed='turbo' is not one of exact, fp8, cache"):
        get_engine("wan-i2v").extra_spec()["speed"].check("turbo")
    with pytest.raises(ValueError, match="speed=few_step is Wan's 4-step distill preset; this engine has no"):
        make_ledger(_req("ltx-video", 4, speed="few_step"), "cpu")


def test_fp8_layer_maths_and_block_replacement():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48).to(torch.bfloat16)
    q = RowwiseFp8Linear(lin)
    assert q.qweight.dtype == torch.float8_e4m3fn and q.qweight.shape == (48, 64)
    assert q.qweight.element_size() == 1  # half the bytes of bf16
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    ref = lin(x).float()
    out = q(x).float()
    rel = (out - ref).norm() / ref.norm()
    assert out.shape == ref.shape and 0 < rel < 0.08, float(rel)
    block = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.GELU(), torch.nn.Linear(32, 24))
    assert quantize_blocks([block]) == 1  # 24 is not a multiple of 16: that layer stays
    assert isinstance(block[0], RowwiseFp8Linear) and isinstance(block[2], torch.nn.Linear)


def test_ledger_estimates_per_tier_and_the_manifest_carries_the_tier(tmp_path, monkeypatch):
    eng = get_engine("wan-i2v")
    req = _req("wan-i2v", 40)
    req.width, req.height, req.frames = 832, 480, 81
    tiers = ("exact", "fp8", "cache", "fp8+cache")
    est = {t: eng.seconds_estimate(_with(req, speed=t), "cuda") for t in tiers}
    assert est["fp8"] < est["exact"] and est["cache"] < est["exact"] and est["fp8+cache"] < est["fp8"]
    from studio.speed.estimate import calibration
    cal = calibration()
    t = cal["tiers"]["exact"]
    measured = t.get("seconds_total")
    if measured:  # the committed H200 calibration: the ledger lands within ±30% of the benchmark
        for tier in est:
            assert est[tier] == pytest.approx(cal["tiers"][tier]["seconds_total"], rel=0.3), tier
    # through the whole pipeline: manifest, --from-manifest
    from PIL import Image

    from studio import pipeline
    models = tmp_path / "models"
    tm.tiny_wan().save_pretrained(str(models / "wan-i2v"), safe_serialization=True)
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(models))
    Image.fromarray(IMAGE).save(tmp_path / "in.png")
    r = _req("wan-i2v", 6, speed="cache")
    r.image = str(tmp_path / "in.png")
    led = pipeline.make_ledger(r, "cpu")
    assert any("speed cache" in str(row) for row in led.rows) or "cache" in str(led.to_dict())
    res = pipeline.generate(r, out=tmp_path / "o" / "v.mp4", ctx=RunContext(device="cpu"))
    m = res.manifest
    assert m["request"]["extra"]["speed"] == "cache"
    assert res.base_clip.meta["speed"]["computed_steps"] == computed_steps(6)
    again = pipeline.request_from_manifest(res.manifest_path)
    assert again.extra["speed"] == "cache"
    from studio.modelmgr import MANAGER
    MANAGER.evict()


def _with(req: GenerationRequest, **extra) -> GenerationRequest:
    import copy
    r = copy.copy(req)
    r.extra = dict(req.extra) | extra
    return r


def test_cli_takes_the_tier_and_names_a_bad_one():
    import subprocess
    import sys
    from pathlib import Path
    img = str(Path(__file__).resolve().parent / "data" / "coffee.jpg")
    base = [sys.executable, "-m", "studio", "generate", img, "--engine", "wan-i2v", "--prompt", "a cat",
            "--frames", "17", "--plan", "--device", "cpu"]
    ok = subprocess.run(base + ["--speed-tier", "cache"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "[full, speed cache]" in ok.stdout, ok.stderr
    bad = subprocess.run(base + ["--set", "speed=turbo"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "speed='turbo' is not one of exact, fp8, cache" in bad.stderr
    fp8 = subprocess.run(base + ["--speed-tier", "fp8"], capture_output=True, text=True, timeout=300)
    assert fp8.returncode == 2 and "fp8 tensor cores" in fp8.stderr
