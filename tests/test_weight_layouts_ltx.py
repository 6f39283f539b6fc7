"""The same tiny LTX-Video weights as a diffusers folder, as a whole original LTX checkpoint
(transformer + VAE in one file, in a ComfyUI `checkpoints/` folder), as fp8 files (e4m3fn
transformer, "scaled" T5) and as a GGUF Q8_0 transformer: the same frames for one seed
(single file: equal; fp8 and GGUF: within the tolerances of test_weight_layouts.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("gguf")
import tiny_layouts as tl  # noqa: E402
import torch  # noqa: E402
from test_weight_layouts import FP8_TOL, GGUF_TOL, _use  # noqa: E402

from studio.context import RunContext  # noqa: E402
from studio.engines import get_engine  # noqa: E402
from studio.engines import weightfiles as wf  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402

EID = "ltx-video"
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltx-layouts")
    pipe = tl.tiny_ltx_for_layouts()
    tl.save_configs(pipe, root / "configs" / EID)
    tr, vae, te = pipe.transformer.state_dict(), pipe.vae.state_dict(), pipe.text_encoder.state_dict()
    te.pop("encoder.embed_tokens.weight")  # tied to shared.weight; T5 files carry it once
    whole = {**tl.ltx_transformer_to_original(tr), **tl.ltx_vae_to_original(vae)}
    # a) the diffusers folder
    pipe.save_pretrained(str(root / "a" / EID), safe_serialization=True)
    # b) ComfyUI: the whole checkpoint in checkpoints/, T5 in text_encoders/; tokenizer in models/
    comfy = root / "comfy"
    tl.save_file(whole, comfy / "checkpoints" / "ltx-video-tiny-v0.9.safetensors")
    tl.save_file(te, comfy / "text_encoders" / "t5xxl_tiny.safetensors")
    for name in ("b", "c", "d"):
        pipe.tokenizer.save_pretrained(str(root / name / EID / "tokenizer"))
    # c) fp8 files in models/<engine>/: transformer e4m3fn, T5 e4m3fn scaled, the VAE in bf16
    d = root / "c" / EID
    tl.save_file(tl.fp8_state(tl.ltx_transformer_to_original(tr), scaled=False),
                 d / "ltx-video-tiny_fp8_e4m3fn.safetensors")
    tl.save_file(tl.fp8_state(te, scaled=True), d / "t5xxl_tiny_fp8_e4m3fn_scaled.safetensors")
    tl.save_file(tl.ltx_vae_to_original(vae), d / "ltx_tiny_vae.safetensors")
    # d) GGUF Q8_0 transformer (original keys, no prefix), VAE with diffusers keys
    d = root / "d" / EID
    d.mkdir(parents=True, exist_ok=True)
    q8 = tl.save_gguf_q8(tl.ltx_transformer_to_original(tr, prefix=""), d / "ltx-video-tiny-Q8_0.gguf",
                         arch="ltxv")
    tl.save_file(te, d / "t5xxl_tiny.safetensors")
    tl.save_file(vae, d / "ltx_tiny_vae_diffusers_keys.safetensors")
    return {"pipe": pipe, "root": root, "q8_tensors": q8}


def _frames(seed: int = 0):
    eng = get_engine(EID)
    req = GenerationRequest(image="in.png", prompt="a cat zooming in", engine=EID, frames=9, width=32,
                            height=32, fps=24, steps=2, guidance=3.0, seed=seed)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()}
    loaded = eng.load("cpu", req.extra)
    return eng.run(loaded.pipe, IMAGE, req, RunContext()).frames.astype(int), loaded


def test_original_ltx_files_convert_back_to_exactly_the_diffusers_keys(layouts):
    pipe = layouts["pipe"]
    whole = {**tl.ltx_transformer_to_original(pipe.transformer.state_dict()),
             **tl.ltx_vae_to_original(pipe.vae.state_dict())}
    info_kinds = wf._kinds({wf._strip(k) for k in whole})
    assert info_kinds == {"ltx_transformer": "original", "ltx_vae": "original"}  # one file, both parts
    for comp, cls in [("transformer", "LTXVideoTransformer3DModel"), ("vae", "AutoencoderKLLTXVideo")]:
        sd = getattr(pipe, comp).state_dict()
        back = wf.convert(dict(whole), "original", cls)
        assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd), comp


def test_every_ltx_layout_gives_the_same_frames(layouts, monkeypatch):
    _use(monkeypatch, layouts, "a")
    ref, loaded = _frames()
    assert "weights" not in loaded.info and ref.shape == (9, 32, 32, 3)
    other_seed, _ = _frames(seed=1)
    seed_gap = np.abs(other_seed - ref).mean()
    assert seed_gap > 2.0

    # the whole original checkpoint in ComfyUI's checkpoints/: one file fills transformer and VAE
    _use(monkeypatch, layouts, "b", comfy=True)
    inv = get_engine(EID).inventory()
    assert inv.present and inv.folder is None, (inv.missing, inv.rejected)
    assert inv.parts["transformer"].path == inv.parts["vae"].path
    assert inv.parts["transformer"].path.parent.name == "checkpoints"
    assert inv.parts["text_encoder"].path.parent.name == "text_encoders"
    single, loaded = _frames()
    assert loaded.info["weights"]["transformer"].startswith("safetensors fp32 (ComfyUI/original keys)")
    assert np.array_equal(single, ref)

    # fp8: stored as fp8, frames within FP8_TOL of the seed gap
    _use(monkeypatch, layouts, "c")
    inv = get_engine(EID).inventory()
    assert inv.parts["transformer"].info.precision == "fp8_e4m3fn"
    assert inv.parts["text_encoder"].info.precision == "fp8_e4m3fn scaled"
    assert inv.parts["vae"].info.kinds == {"ltx_vae": "original"}
    f8, loaded = _frames()
    f8_gap = tl.fp8_gap(loaded, f8, ref)
    assert 0 < f8_gap < FP8_TOL * seed_gap, (f8_gap, seed_gap)

    # GGUF Q8_0 transformer: within GGUF_TOL of the seed gap
    _use(monkeypatch, layouts, "d")
    inv = get_engine(EID).inventory()
    assert inv.parts["transformer"].info.precision == "gguf Q8_0"
    # diffusers keys do not tell LTX-Video 0.9 from LTX-2 VAEs: the shape check picks (ltx2_vae too)
    assert inv.parts["vae"].info.kinds["ltx_vae"] == "diffusers"
    q8, loaded = _frames()
    n_q = tl.gguf_count(loaded)
    assert n_q >= 10 and n_q <= layouts["q8_tensors"]
    gap = np.abs(q8 - ref).mean()
    print(f"LTX mean abs (of 255): seed gap {seed_gap:.3f}, fp8 {f8_gap:.3f}, gguf Q8_0 {gap:.3f}")
    assert 0 < gap < GGUF_TOL * seed_gap, (gap, seed_gap)
    from studio.modelmgr import MANAGER
    MANAGER.evict()
