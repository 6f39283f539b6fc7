"""Diffusion engines on tiny random pipelines (CPU, 32–64 px, 2 steps, no downloads)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
import tiny_models as tm  # noqa: E402

from studio.context import Cancelled, RunContext  # noqa: E402
from studio.engines import check_request, get_engine  # noqa: E402
from studio.request import GenerationRequest, LoraRef  # noqa: E402

# engine id -> (frames, width, height, LoRA key prefix)
CASES = {
    "i2vgen-xl": (4, 32, 32, "unet"),
    "svd": (3, 64, 64, "unet"),
    "ltx-video": (9, 32, 32, "transformer"),
    "wan-i2v": (5, 32, 32, "transformer"),
    "wan2.2-ti2v": (5, 32, 32, "transformer"),
}
_PIPES: dict[str, object] = {}
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def pipe_for(eid: str):
    if eid not in _PIPES:
        _PIPES[eid] = tm.BUILDERS[eid]()
    return _PIPES[eid]


def request(eid: str, seed: int = 0, loras=(), prompt: str = "a cat zooming in") -> GenerationRequest:
    frames, w, h, _ = CASES[eid]
    eng = get_engine(eid)
    req = GenerationRequest(image="in.png", prompt=prompt, engine=eid, frames=frames, width=w, height=h,
                            steps=2, guidance=3.0, seed=seed, loras=list(loras))
    req.extra = {k: p.default for k, p in eng.extra_spec().items()}
    return req


def run(eid: str, **kw):
    return get_engine(eid).run(pipe_for(eid), IMAGE, request(eid, **kw), RunContext())


@pytest.fixture()
def lora_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(tmp_path))
    return tmp_path


def _lora(eid: str, d: Path, name: str, family: str | None, **kw) -> Path:
    p = d / f"{name}.safetensors"
    model = getattr(pipe_for(eid), get_engine(eid).denoiser)
    n = tm.write_lora(p, model, prefix=CASES[eid][3], **kw)
    assert n > 0
    if family:
        (d / f"{name}.json").write_text(json.dumps({"family": family, "trigger_words": ["tw"]}))
    return p


@pytest.mark.parametrize("eid", list(CASES))
def test_engine_frames_seed_lora_and_refusal(eid, lora_dir):
    frames, w, h, _ = CASES[eid]
    steps: list[tuple] = []
    eng = get_engine(eid)
    clip = eng.run(pipe_for(eid), IMAGE, request(eid), RunContext(progress=lambda *a: steps.append(a)))
    # frame count and size
    assert clip.frames.shape == (frames, h, w, 3) and clip.frames.dtype == np.uint8
    assert steps == [("denoise", 1, 2), ("denoise", 2, 2)]
    # same seed, same frames; another seed, other frames
    again = run(eid).frames
    assert np.array_equal(clip.frames, again)
    assert not np.array_equal(clip.frames, run(eid, seed=1).frames)
    # a LoRA at strength 0 is exactly the base, at 1 it changes the output; off again = base
    _lora(eid, lora_dir, "style", eng.family, scale=2.0)
    zero = run(eid, loras=[LoraRef("style", 0.0)]).frames
    assert np.array_equal(zero, clip.frames)
    one = run(eid, loras=[LoraRef("style", 1.0)]).frames
    assert np.abs(one.astype(int) - clip.frames.astype(int)).max() > 0
    assert np.array_equal(run(eid).frames, clip.frames)
    # an incompatible LoRA is refused with a message
    from studio.loras import LoraError
    (lora_dir / "other.safetensors").write_bytes((lora_dir / "style.safetensors").read_bytes())
    (lora_dir / "other.json").write_text(json.dumps({"family": "not-" + eng.family}))
    with pytest.raises(LoraError, match="family"):
        run(eid, loras=[LoraRef("other", 1.0)])


def test_lora_stacking_kohya_and_no_reload(lora_dir):
    eid = "i2vgen-xl"
    eng = get_engine(eid)
    pipe = pipe_for(eid)
    base = run(eid).frames
    _lora(eid, lora_dir, "a", "i2vgen-xl", style="kohya", scale=2.0, seed=1)
    _lora(eid, lora_dir, "b", "i2vgen-xl", style="old", scale=2.0, seed=2)
    from studio.loras import target_modules
    before = {n: m.weight for n, m in target_modules(pipe.unet).items()}
    a = run(eid, loras=[LoraRef("a", 1.0)]).frames
    ab = run(eid, loras=[LoraRef("a", 1.0), LoraRef("b", 0.7)]).frames
    assert not np.array_equal(a, base) and not np.array_equal(ab, a)
    # switching keeps the same base weights object (never reloaded) and strength 0 is exact
    after = target_modules(pipe.unet)
    wrapped = [n for n, m in pipe.unet.named_modules() if hasattr(m, "adapters") and "a" in m.adapters]
    assert len(wrapped) >= 4
    assert all(after[n].weight is before[n] for n in before)
    assert np.array_equal(run(eid, loras=[LoraRef("a", 0.0), LoraRef("b", 0.0)]).frames, base)
    assert eng.supports_loras


def test_lora_with_no_matching_keys_is_refused(lora_dir):
    import torch
    from safetensors.torch import save_file

    from studio.loras import LoraError, validate_lora
    p = lora_dir / "junk.safetensors"
    save_file({"lora_unet_nowhere_x.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_nowhere_x.lora_up.weight": torch.zeros(4, 2)}, str(p))
    eng = get_engine("i2vgen-xl")
    rep = validate_lora(p, eng, pipe_for("i2vgen-xl").unet)
    assert not rep.ok and rep.matched == 0 and rep.unmatched == 2 and "refused" in rep.message
    with pytest.raises(LoraError, match="none of its keys fit"):
        run("i2vgen-xl", loras=[LoraRef("junk", 1.0)])


def test_cancel_stops_at_a_denoising_step():
    ev = threading.Event()
    seen = []

    def progress(stage, i, n):
        seen.append(i)
        ev.set()  # ask to stop after the first step
    ctx = RunContext(progress=progress, cancel=ev)
    eid = "ltx-video"
    with pytest.raises(Cancelled):
        get_engine(eid).run(pipe_for(eid), IMAGE, request(eid), ctx)
    assert seen == [1]


def test_svd_prompt_sets_motion_bucket_and_tells_the_user():
    from studio.engines.svd import motion_bucket_from_prompt
    assert motion_bucket_from_prompt("waves crash, fast camera") == (200, "fast")
    assert motion_bucket_from_prompt("a slight breeze")[0] == 50
    assert motion_bucket_from_prompt("a cat")[0] == 127
    eng = get_engine("svd")
    req = request("svd", prompt="clouds drifting slowly")
    assert eng.bucket(req) == 50
    req.extra["motion_bucket"] = 180
    assert eng.bucket(req) == 180
    clip = run("svd", prompt="a fast dog")
    assert any("SVD ignores text" in n for n in clip.meta["notes"])


def test_spec_rules_and_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    ltx, wan = get_engine("ltx-video"), get_engine("wan-i2v")
    with pytest.raises(ValueError, match="8k"):
        ltx.spec()["frames"].check(24)
    assert ltx.spec()["frames"].check(25) == 25
    with pytest.raises(ValueError, match="4k"):
        wan.spec()["frames"].check(32)
    with pytest.raises(ValueError, match="multiple of 32"):
        ltx.spec()["width"].check(100)
    st = get_engine("i2vgen-xl").status()
    assert not st.present
    from studio.hubfetch import hf_cli
    assert f"{hf_cli()} download ali-vilab/i2vgen-xl --local-dir {tmp_path.resolve()}/i2vgen-xl" in st.detail
    (tmp_path / "i2vgen-xl").mkdir()
    (tmp_path / "i2vgen-xl" / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "X"]}))
    from studio.weights import WeightsError
    with pytest.raises(WeightsError, match=r"incomplete \(missing unet/\).*hf download"):
        get_engine("i2vgen-xl").load("cpu", {})


def test_generate_end_to_end_through_interpolation(tmp_path, monkeypatch):
    pipeline = pytest.importorskip("studio.pipeline")
    models = tmp_path / "models"
    tm.tiny_i2vgen().save_pretrained(str(models / "i2vgen-xl"), safe_serialization=True)
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(models))
    monkeypatch.setenv("STUDIO_OUTPUTS_DIR", str(tmp_path / "out"))
    from PIL import Image
    Image.fromarray(IMAGE).save(tmp_path / "in.png")
    req = GenerationRequest(image=str(tmp_path / "in.png"), prompt="a cat", engine="i2vgen-xl", frames=4,
                            width=32, height=32, steps=2, guidance=3.0, fps=8, interpolate=2, upscale=1)
    res = pipeline.generate(req, out=tmp_path / "out" / "v.mp4", ctx=RunContext(device="cpu"))
    assert res.output.is_file() and res.manifest_path.is_file()
    assert res.base_clip.frames.shape == (4, 32, 32, 3)
    assert res.clip.frames.shape[0] > 4  # interpolated
    w = res.manifest["weights"]
    assert w["repo"] == "ali-vilab/i2vgen-xl" and any(k.endswith(".safetensors") for k in w["files"])
    # same request and seed again: identical base frames (the pipeline stays loaded)
    res2 = pipeline.generate(req, out=tmp_path / "out" / "v2.mp4", ctx=RunContext(device="cpu"))
    assert np.array_equal(res.base_clip.frames, res2.base_clip.frames)
    from studio.modelmgr import MANAGER
    MANAGER.evict()
    assert MANAGER.loaded is None


def test_channels_last_vae_skips_3d_convs_of_svd():
    """SVD's temporal decoder has Conv3d weights; channels_last must touch only the 2-D convs."""
    import torch

    from studio import modelmgr
    pipe = tm.tiny_svd()
    done = modelmgr.optimize(pipe, channels_last=True, pad_heads=False)
    convs2d = [m for m in pipe.vae.modules() if isinstance(m, torch.nn.Conv2d)]
    assert done["channels_last_vae"] == len(convs2d) > 0
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs2d)
    assert any(isinstance(m, torch.nn.Conv3d) for m in pipe.vae.modules())


@pytest.mark.parametrize("eid, encoders", [("i2vgen-xl", ("text_encoder", "image_encoder")),
                                           ("svd", ("image_encoder",))])
def test_embeddings_are_reused_between_requests_with_the_same_output(eid, encoders):
    """A new seed (or steps) with the same prompt and image reuses the embeddings; frames equal a
    run whose cache was emptied; a new prompt encodes again (text engines)."""
    pipe = pipe_for(eid)
    calls = {name: 0 for name in encoders}
    for name in encoders:
        mod = getattr(pipe, name)
        orig = mod.forward

        def counting(*a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(*a, **k)
        mod.forward = counting
    try:
        pipe.__dict__.pop("_studio_embed_cache", None)
        run(eid, seed=1)
        first = dict(calls)
        assert all(v >= 1 for v in first.values()), first
        reused = run(eid, seed=2)
        assert calls == first and reused.meta["embeddings_reused"] >= 1
        pipe.__dict__.pop("_studio_embed_cache", None)
        fresh = run(eid, seed=2)
        assert fresh.meta["embeddings_reused"] == 0
        assert np.array_equal(reused.frames, fresh.frames)
        if "text_encoder" in encoders:
            before = dict(calls)
            run(eid, seed=2, prompt="a dog panning left")
            assert calls["text_encoder"] > before["text_encoder"]
            assert calls["image_encoder"] == before["image_encoder"]
    finally:
        for name in encoders:
            del getattr(pipe, name).forward


@pytest.mark.parametrize("eid", ["i2vgen-xl", "svd"])
def test_cfg_cutoff_fast_preset(eid):
    """cfg_cutoff=1 is the model's own output; 0.5 runs the UNet at batch 2 then 1 and changes the
    frames; 0 equals guidance 1 (the conditional branch alone) — all on the same seed."""
    eng = get_engine(eid)
    assert "cfg_cutoff" in eng.extra_spec()
    pipe = pipe_for(eid)

    def go(cut: float, guidance: float = 3.0, steps: int = 4):
        req = request(eid, seed=3)
        req.steps, req.guidance = steps, guidance
        req.extra["cfg_cutoff"] = cut
        sizes = []
        unet = pipe.unet
        orig = type(unet).forward

        def spy(self, *a, **k):
            sizes.append(int((a[0] if a else k["sample"]).shape[0]))
            return orig(self, *a, **k)
        type(unet).forward = spy
        try:
            return eng.run(pipe, IMAGE, req, RunContext()), sizes
        finally:
            type(unet).forward = orig

    full, s_full = go(1.0)
    half, s_half = go(0.5)
    none, s_none = go(0.0)
    plain, s_plain = go(1.0, guidance=1.0)
    assert s_full == [2, 2, 2, 2] and s_half == [2, 2, 1, 1] and s_none == [1, 1, 1, 1]
    assert s_plain == [1, 1, 1, 1]
    assert "cfg_steps" not in full.meta and half.meta["cfg_steps"] == 2 and none.meta["cfg_steps"] == 0
    assert any("cfg_cutoff=0.5" in n and "changes the output" in n for n in half.meta["notes"])
    assert not np.array_equal(full.frames, half.frames)
    assert np.abs(none.frames.astype(int) - plain.frames.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="cfg_cutoff"):
        bad = request(eid)
        bad.extra["cfg_cutoff"] = 1.5
        check_request(bad)
