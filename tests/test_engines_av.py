"""LTX-2 (picture + stereo sound) and HunyuanVideo 1.5 I2V on tiny random models built from configs
(diffusers' own tiny test sizes), through the studio: engine.run, engine.generate and
pipeline.generate with the ledger.  CPU, 32–84 px, 9 frames, 2 steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("diffusers")
import tiny_av_models as ta  # noqa: E402
import tiny_layouts as tl  # noqa: E402

from studio.context import RunContext  # noqa: E402
from studio.engines import get_engine  # noqa: E402
from studio.request import GenerationRequest, LoraRef  # noqa: E402

LTX, HY = "ltx2", "hunyuanvideo1.5-i2v"
RNG = np.random.default_rng(0)
WIDE = RNG.integers(0, 256, (36, 64, 3), dtype=np.uint8)  # 16:9
SQUARE = RNG.integers(0, 256, (48, 48, 3), dtype=np.uint8)  # 1:1


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Both tiny pipelines as diffusers folders, their configs as the shipped configs, and the ×2
    latent upsampler in models/ltx2/latent_upsampler/."""
    root = tmp_path_factory.mktemp("av-engines")
    pipes = {LTX: ta.tiny_ltx2(), HY: ta.tiny_hunyuan15()}
    for eid, pipe in pipes.items():
        pipe.save_pretrained(str(root / "models" / eid), safe_serialization=True)
        tl.save_configs(pipe, root / "configs" / eid)
    ta.tiny_upsampler().save_pretrained(str(root / "models" / LTX / "latent_upsampler"))
    return {"root": root, "pipes": pipes}


@pytest.fixture()
def env(saved, monkeypatch, tmp_path):
    root = saved["root"]
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(root / "models"))
    monkeypatch.setenv("STUDIO_CONFIGS_DIR", str(root / "configs"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "no-hf-cache"))
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(tmp_path / "loras"))
    from studio.modelmgr import MANAGER

    MANAGER.evict()
    yield saved
    MANAGER.evict()


def _req(eid: str, image: str = "in.png", **kw) -> GenerationRequest:
    eng = get_engine(eid)
    base = dict(
        image=image,
        prompt="a cat zooming in",
        engine=eid,
        frames=9,
        width=32,
        height=32,
        fps=24.0,
        steps=2,
        guidance=3.0,
        seed=0,
    )
    extra = kw.pop("extra", {})
    req = GenerationRequest(**{**base, **kw})
    req.extra = {**{k: p.default for k, p in eng.extra_spec().items()}, **extra}
    return req


@pytest.mark.parametrize("fps", [24.0, 25.0])
def test_ltx2_gives_frames_and_stereo_sound_exactly_as_long_as_the_video(env, fps):
    eng, pipe = get_engine(LTX), env["pipes"][LTX]
    steps: list[tuple] = []
    clip = eng.run(pipe, WIDE, _req(LTX, fps=fps), RunContext(progress=lambda *a: steps.append(a)))
    assert clip.frames.shape == (9, 32, 32, 3) and steps == [("denoise", 1, 2), ("denoise", 2, 2)]
    a = clip.audio
    rate = pipe.vocoder.config.output_sampling_rate
    assert a is not None and a.rate == rate == 1600 and a.samples.dtype == np.float32
    assert a.samples.shape == (round(9 / fps * rate), 2)  # 600 at 24 fps, 576 at 25
    assert a.samples.shape[0] / a.rate == pytest.approx(9 / fps, abs=0.5 / rate)  # to the sample
    assert np.abs(a.samples).max() <= 1.0
    got = clip.meta["audio"]["vocoder_samples"]
    assert abs(got - a.samples.shape[0]) < 0.25 * a.samples.shape[0]  # the vocoder made most of it
    assert a.samples[: min(got, a.samples.shape[0])].std() > 0  # real sound, not padding
    # same seed, same sound; another seed, other sound
    again = eng.run(pipe, WIDE, _req(LTX, fps=fps), RunContext()).audio.samples
    assert np.array_equal(again, a.samples)
    other = eng.run(pipe, WIDE, _req(LTX, fps=fps, seed=1), RunContext()).audio.samples
    assert not np.array_equal(other, a.samples)


def test_ltx2_through_pipeline_generate_keeps_the_sound(env, tmp_path):
    from PIL import Image

    from studio import pipeline

    Image.fromarray(WIDE).save(tmp_path / "in.png")
    req = _req(LTX, image=str(tmp_path / "in.png"))
    res = pipeline.generate(req, out=tmp_path / "o.mp4", ctx=RunContext(device="cpu"))
    base = res.base_clip
    assert base.frames.shape == (9, 32, 32, 3)
    assert base.audio.samples.shape == (600, 2) and base.audio.duration == 9 / 24
    assert res.clip.audio is not None and res.clip.audio.duration == 9 / 24
    assert res.manifest["engine_meta"]["audio"]["rate"] == 1600


def test_ltx2_two_stage_upsamples_x2_and_costs_its_stages_in_the_ledger(env, monkeypatch):
    from studio.pipeline import make_ledger

    eng = get_engine(LTX)
    monkeypatch.setattr(type(eng), "SECONDS_PER_UNIT_CUDA", 100.0)  # tiny model: make seconds visible
    with pytest.raises(ValueError, match="width=96 must be a multiple of 64"):
        eng.check_request(_req(LTX, width=96, height=64, extra={"two_stage": True}))
    req = _req(LTX, width=64, height=64, extra={"two_stage": True})
    one = _req(LTX, width=32, height=32)
    three = _req(
        LTX, width=64, height=64, steps=3, guidance=1.0, extra={"stg_scale": 0.0, "modality_scale": 1.0}
    )
    est = eng.estimate(req, "cpu")["seconds"]
    assert est == pytest.approx(
        eng.estimate(one, "cpu")["seconds"] + eng.estimate(three, "cpu")["seconds"], abs=0.02
    )
    assert eng.estimate(one, "cpu")["seconds"] > 0 and est > eng.estimate(one, "cpu")["seconds"]
    led = make_ledger(req)
    assert (led.rows[0]["width"], led.rows[0]["height"]) == (64, 64)
    assert led.rows[0]["est_seconds"] == pytest.approx(est, abs=0.01)
    steps: list[tuple] = []
    clip = eng.generate(WIDE, req, RunContext(progress=lambda *a: steps.append(a)))
    assert clip.frames.shape == (9, 64, 64, 3)
    assert [s[1:] for s in steps] == [(i, 5) for i in range(1, 6)]  # 2 base steps + 3 distilled
    assert clip.audio.samples.shape == (600, 2)
    assert any("two-stage" in n for n in clip.meta["notes"])


def test_hunyuan_size_follows_the_image_and_the_ledger_says_it_first(env, tmp_path):
    from PIL import Image

    from studio import pipeline
    from studio.engines.hunyuan15 import bucket_size

    # the full-size model's buckets (target 640 on the 16-px grid)
    assert bucket_size(1920, 1080) == (848, 480)
    assert bucket_size(1080, 1920) == (480, 848)
    assert bucket_size(1000, 1000) == (640, 640)
    eng = get_engine(HY)
    assert {"width", "height"} <= set(eng.ignores)
    for arr, want in ((WIDE, (84, 48)), (SQUARE, (64, 64))):  # the tiny model: target 64, 4-px grid
        p = tmp_path / f"in{arr.shape[1]}.png"
        Image.fromarray(arr).save(p)
        req = _req(HY, image=str(p))  # the request's own 32x32 is ignored
        led = pipeline.make_ledger(req)  # before anything runs
        assert (led.rows[0]["width"], led.rows[0]["height"]) == want
        assert (led.final.width, led.final.height) == want
        res = pipeline.generate(req, out=tmp_path / f"o{arr.shape[1]}.mp4", ctx=RunContext(device="cpu"))
        assert res.base_clip.frames.shape == (9, want[1], want[0], 3)
        assert res.base_clip.audio is None
    with pytest.raises(ValueError, match="image='nope.png'"):
        eng.plan(_req(HY, image="nope.png"))


def test_hunyuan_guidance_goes_through_its_guider(env):
    eng, pipe = get_engine(HY), env["pipes"][HY]
    calls: list[int] = []
    h = pipe.transformer.register_forward_hook(lambda m, a, k: calls.append(1))
    try:
        eng.run(pipe, WIDE, _req(HY, guidance=6.0), RunContext())
        with_cfg = len(calls)
        calls.clear()
        eng.run(pipe, WIDE, _req(HY, guidance=1.0), RunContext())
    finally:
        h.remove()
    assert (with_cfg, len(calls)) == (4, 2)  # 2 steps: cond + uncond each, then cond only
    assert pipe.guider.guidance_scale == 6.0  # the loaded guider is left as it was


def test_hunyuan_lora_check_says_diffusers_has_no_loader(env, tmp_path):
    import torch
    from safetensors.torch import save_file

    from studio.loras import LoraError, check_refs, validate_lora

    d = tmp_path / "loras"
    d.mkdir(exist_ok=True)
    save_file(
        {"transformer.x.lora_A.weight": torch.zeros(2, 4), "transformer.x.lora_B.weight": torch.zeros(4, 2)},
        str(d / "s.safetensors"),
    )
    (d / "s.json").write_text(json.dumps({"family": "hunyuanvideo1.5-i2v"}))
    eng = get_engine(HY)
    rep = validate_lora(d / "s.safetensors", eng)
    assert not rep.ok and "no LoRA loader for HunyuanVideo15ImageToVideoPipeline" in rep.message
    with pytest.raises(LoraError, match="takes no LoRAs.*no LoRA loader"):
        check_refs(eng, [LoraRef("s", 1.0)])
    assert get_engine(LTX).supports_loras and get_engine(LTX).lora_mode == "pipeline"


def test_auto_fits_both_full_size_models_on_a_24_gb_card(monkeypatch):
    """From the shipped full-size configs (built on the meta device): `auto` picks a profile whose
    estimate fits 24 GiB, and the estimate sees the real sizes (LTX-2 19B, HunyuanVideo 8.3B)."""
    from studio.engines import memory, profiles

    monkeypatch.delenv("STUDIO_CONFIGS_DIR", raising=False)
    cap = 24 << 30
    for eid, (w, h, steps, g, den_b, tokens, want) in {
        LTX: (768, 512, 30, 3.0, 18.88, 24 * 16 * 16 * 1, "group_leaf"),
        HY: (848, 480, 50, 6.0, 8.33, 31 * 30 * 53, "model_offload"),
    }.items():
        eng = get_engine(eid)
        req = _req(eid, frames=121, width=w, height=h, steps=steps, guidance=g)
        s = profiles.sizes(eng, req, "cuda")
        assert s.params["transformer"] / 2 / 1e9 == pytest.approx(den_b, abs=0.01) and s.tokens == tokens
        ch = profiles.choice(eng, req, "cuda", budget_bytes=cap)
        assert ch.profile == want and ch.peak_bytes <= cap, ch.describe()
        assert ch.estimates["full"] > cap  # it does need a profile on a 24 GB card
        assert memory.estimate(ch.profile, s) == ch.peak_bytes


def test_ltx2_loras_in_published_layouts(env, tmp_path):
    """diffusers keys, the original/ComfyUI `diffusion_model.` keys and kohya keys all load through
    diffusers' LTX2LoraLoaderMixin: strength 0 is exactly the base, 1 changes the frames, and an
    off LoRA leaves the base again; another family's LoRA is refused."""
    import tiny_models as tm

    from studio.loras import LoraError
    eng, pipe = get_engine(LTX), env["pipes"][LTX]
    plain = {"stg_scale": 0.0, "modality_scale": 1.0}  # CFG only: half the passes, the same loader
    d = tmp_path / "loras"
    d.mkdir(exist_ok=True)
    base = eng.run(pipe, WIDE, _req(LTX, extra=plain), RunContext())
    layouts = (("diff", "diffusers", "transformer"), ("comfy", "diffusers", "diffusion_model"),
               ("kohya", "kohya", ""))
    for name, style, prefix in layouts:
        n = tm.write_lora(d / f"{name}.safetensors", pipe.transformer, style=style, prefix=prefix, scale=2.0,
                          limit=8)
        assert n == 8
        (d / f"{name}.json").write_text(json.dumps({"family": "ltx2"}))
        one = eng.run(pipe, WIDE, _req(LTX, extra=plain, loras=[LoraRef(name, 1.0)]), RunContext())
        assert np.abs(one.frames.astype(int) - base.frames.astype(int)).max() > 0, name
        assert one.meta["loras"][0]["name"] == name
    zero = eng.run(pipe, WIDE, _req(LTX, extra=plain, loras=[LoraRef("comfy", 0.0)]), RunContext())
    assert np.array_equal(zero.frames, base.frames) and np.array_equal(zero.audio.samples, base.audio.samples)
    assert np.array_equal(eng.run(pipe, WIDE, _req(LTX, extra=plain), RunContext()).frames, base.frames)
    (d / "other.safetensors").write_bytes((d / "diff.safetensors").read_bytes())
    (d / "other.json").write_text(json.dumps({"family": "wan2.1-i2v-14b"}))
    with pytest.raises(LoraError, match="family"):
        eng.run(pipe, WIDE, _req(LTX, loras=[LoraRef("other", 1.0)]), RunContext())
    pipe.delete_adapters(list(pipe.get_list_adapters().get("transformer", [])))
    pipe.__dict__.pop("_studio_loras", None)


def test_missing_weights_name_the_fetch_commands(tmp_path, monkeypatch):
    """Nothing on disk: each engine says what is missing and the `hf download` that gets it, offline."""
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("STUDIO_CONFIGS_DIR", raising=False)
    monkeypatch.delenv("STUDIO_COMFYUI_DIR", raising=False)
    # the commands name the hf beside this Python and an absolute --local-dir (they run as shown)
    for eid, cmd in ((LTX, f"hf download Lightricks/LTX-2 --local-dir {tmp_path / 'ltx2'}"),
                     (HY, "hf download hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v "
                          f"--local-dir {tmp_path / 'hunyuanvideo1.5-i2v'}")):
        st = get_engine(eid).status()
        assert not st.present and cmd in st.detail, st.detail
    inv = get_engine(LTX).inventory()
    assert {"transformer", "vae", "audio_vae", "vocoder", "connectors", "text_encoder"} <= set(inv.missing)
    assert "ltx-2-19b-dev-fp8.safetensors" in " ".join(inv.commands())


def test_ltx2_ledger_shows_its_sound_before_the_run():
    from studio.engines import get_engine
    from studio.pipeline import make_ledger
    from studio.request import GenerationRequest
    eng = get_engine("ltx2")
    req = GenerationRequest(image="in.png", prompt="a cat", engine="ltx2", frames=121, width=768, height=512,
                            fps=24, steps=30, guidance=3.0, seed=0)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()}
    led = make_ledger(req, "cpu")
    assert led.audio is not None, led.to_dict()
    text = str(led.audio)
    assert "24000" in text and ("stereo" in text or "'channels': 2" in text), text
