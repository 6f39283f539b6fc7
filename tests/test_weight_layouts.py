"""The same tiny Wan I2V weights as a diffusers folder, ComfyUI/original single files (in models/ and
in a ComfyUI models folder), fp8 (e4m3fn and "scaled") and GGUF Q8_0: same frames for one seed
(single files: equal; fp8 and GGUF: within the stated tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("gguf")
import tiny_layouts as tl  # noqa: E402
import torch  # noqa: E402

from studio.context import RunContext  # noqa: E402
from studio.engines import get_engine  # noqa: E402
from studio.engines import weightfiles as wf  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402

EID = "wan-i2v"
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
# fp8 e4m3fn keeps 3 mantissa bits (~3 % per weight); Q8_0 keeps 8 bits per 32-value block.
# Stated tolerances, as a share of how far another seed moves the frames (mean abs, of 255):
FP8_TOL, GGUF_TOL = 0.35, 0.10  # measured: 0.25 and 0.05 (6.8 and 1.4 of 27.3)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    pipe = tl.tiny_wan_for_layouts()
    tl.save_configs(pipe, root / "configs" / EID)
    tr, vae = pipe.transformer.state_dict(), pipe.vae.state_dict()
    te, ie = pipe.text_encoder.state_dict(), pipe.image_encoder.state_dict()
    te.pop("encoder.embed_tokens.weight")  # tied to shared.weight; T5 files carry it once
    out = {"pipe": pipe, "root": root}
    # a) the diffusers folder
    pipe.save_pretrained(str(root / "a" / EID), safe_serialization=True)
    # b) ComfyUI/original single files in a ComfyUI models folder; tokenizer in models/<engine>/
    comfy = root / "comfy"
    tl.save_file(tl.wan_transformer_to_original(tr), comfy / "diffusion_models" / "wan_tiny_i2v.safetensors")
    tl.save_file(te, comfy / "text_encoders" / "umt5_tiny.safetensors")
    tl.save_file(ie, comfy / "clip_vision" / "clip_vision_tiny.safetensors")
    tl.save_file(tl.wan_vae_to_original(vae), comfy / "vae" / "wan_tiny_vae.safetensors")
    for name in ("b", "c", "d"):
        pipe.tokenizer.save_pretrained(str(root / name / EID / "tokenizer"))
    # c) fp8 files in models/<engine>/: transformer e4m3fn, text encoder e4m3fn scaled
    d = root / "c" / EID
    tl.save_file(tl.fp8_state(tl.wan_transformer_to_original(tr), scaled=False),
                 d / "wan_tiny_i2v_fp8_e4m3fn.safetensors")
    tl.save_file(tl.fp8_state(te, scaled=True), d / "umt5_tiny_fp8_e4m3fn_scaled.safetensors")
    tl.save_file(ie, d / "clip_vision_tiny.safetensors")
    tl.save_file(tl.wan_vae_to_original(vae), d / "wan_tiny_vae.safetensors")
    # d) GGUF Q8_0 transformer (original keys), the rest as single files
    d = root / "d" / EID
    d.mkdir(parents=True, exist_ok=True)
    orig = tl.wan_transformer_to_original(tr, prefix="")  # city96 GGUFs carry no prefix
    out["q8_tensors"] = tl.save_gguf_q8(orig, d / "wan_tiny-Q8_0.gguf")
    tl.save_file(te, d / "umt5_tiny.safetensors")
    tl.save_file(ie, d / "clip_vision_tiny.safetensors")
    tl.save_file(vae, d / "wan_tiny_vae_diffusers_keys.safetensors")
    return out


def _use(monkeypatch, layouts, name: str, comfy: bool = False):
    root = layouts["root"]
    monkeypatch.setenv("STUDIO_CONFIGS_DIR", str(root / "configs"))
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(root / name))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "no-hf-cache"))
    if comfy:
        monkeypatch.setenv("STUDIO_COMFYUI_DIR", str(root / "comfy"))
    else:
        monkeypatch.delenv("STUDIO_COMFYUI_DIR", raising=False)
    from studio.modelmgr import MANAGER
    MANAGER.evict()


def _frames(seed: int = 0):
    eng = get_engine(EID)
    req = GenerationRequest(image="in.png", prompt="a cat zooming in", engine=EID, frames=5, width=32,
                            height=32, steps=2, guidance=3.0, seed=seed)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()}
    loaded = eng.load("cpu", req.extra)
    return eng.run(loaded.pipe, IMAGE, req, RunContext()).frames.astype(int), loaded


def test_original_layout_files_convert_back_to_exactly_the_diffusers_keys(layouts):
    pipe = layouts["pipe"]
    for comp, inv, cls in [("transformer", tl.wan_transformer_to_original, "WanTransformer3DModel"),
                           ("vae", tl.wan_vae_to_original, "AutoencoderKLWan")]:
        sd = getattr(pipe, comp).state_dict()
        orig = inv(sd)
        assert not set(orig) & set(sd) - {"patch_embedding.weight"}  # really another layout
        back = wf.convert(dict(orig), "original", cls)
        assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_every_layout_gives_the_same_frames(layouts, monkeypatch):
    _use(monkeypatch, layouts, "a")
    ref, loaded = _frames()
    assert "weights" not in loaded.info  # the diffusers folder path
    other_seed, _ = _frames(seed=1)
    seed_gap = np.abs(other_seed - ref).mean()
    assert seed_gap > 2.0

    # ComfyUI folder, original keys, full precision: identical frames
    _use(monkeypatch, layouts, "b", comfy=True)
    inv = get_engine(EID).inventory()
    assert inv.present and inv.folder is None
    assert inv.parts["transformer"].info.kinds == {"wan_transformer": "original"}
    assert inv.parts["vae"].path.parent.name == "vae" and inv.parts["tokenizer"].source == "tokenizer"
    single, loaded = _frames()
    assert loaded.info["weights"]["transformer"].startswith("safetensors fp32 (ComfyUI/original keys)")
    assert np.array_equal(single, ref)

    # fp8: stored as fp8 (half the bytes of bf16), frames within FP8_TOL of the seed gap
    _use(monkeypatch, layouts, "c")
    inv = get_engine(EID).inventory()
    assert inv.parts["transformer"].info.precision == "fp8_e4m3fn"
    assert inv.parts["text_encoder"].info.precision == "fp8_e4m3fn scaled"
    f8, loaded = _frames()
    f8_gap = tl.fp8_gap(loaded, f8, ref)
    from studio.engines.fp8 import Fp8Linear
    te_fp8 = [m for m in loaded.pipe.text_encoder.modules() if isinstance(m, Fp8Linear)]
    assert te_fp8 and all(m.scale_weight is not None for m in te_fp8)
    assert 0 < f8_gap < FP8_TOL * seed_gap, (f8_gap, seed_gap)

    # GGUF Q8_0 transformer: within GGUF_TOL of the seed gap
    _use(monkeypatch, layouts, "d")
    inv = get_engine(EID).inventory()
    assert inv.parts["transformer"].info.precision == "gguf Q8_0"
    assert inv.parts["vae"].info.kinds == {"wan_vae": "diffusers"}
    q8, loaded = _frames()
    tr = loaded.pipe.transformer
    n_q = tl.gguf_count(loaded)
    # diffusers keeps the `_keep_in_fp32_modules` (the time embedder's 2 Linears) dequantized
    kept = sum(1 for n, m in tr.named_modules() if isinstance(m, torch.nn.Linear)
               and any(k in n for k in tr._keep_in_fp32_modules) and m.weight.shape[1] % 32 == 0)
    assert kept == 2 and n_q == layouts["q8_tensors"] - kept >= 10
    gap = np.abs(q8 - ref).mean()
    print(f"mean abs (of 255): seed gap {seed_gap:.3f}, fp8 {f8_gap:.3f}, gguf Q8_0 {gap:.3f}")
    assert 0 < gap < GGUF_TOL * seed_gap, (gap, seed_gap)
    from studio.modelmgr import MANAGER
    MANAGER.evict()


def test_a_file_of_another_model_is_rejected_with_the_reason(layouts, monkeypatch, tmp_path):
    _use(monkeypatch, layouts, "b", comfy=True)
    bad = tl.wan_transformer_to_original(layouts["pipe"].transformer.state_dict())
    bad["model.diffusion_model.patch_embedding.weight"] = torch.zeros(32, 16, 1, 2, 2)  # a T2V file
    other = tmp_path / "models"
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(other))
    monkeypatch.delenv("STUDIO_COMFYUI_DIR")
    tl.save_file(bad, other / EID / "wan_t2v.safetensors")
    inv = get_engine(EID).inventory()
    assert not inv.present and "transformer" in inv.missing and "tokenizer" in inv.missing
    assert any("wan_t2v.safetensors does not fit wan-i2v transformer: 1 shapes differ "
               "(e.g. patch_embedding.weight" in r for r in inv.rejected), inv.rejected
    # nothing usable at all: the whole repo, or the ComfyUI single files
    cmds = inv.commands()
    from studio.hubfetch import hf_cli
    dest = (tmp_path / "models").resolve()
    assert cmds[0] == f"{hf_cli()} download Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --local-dir {dest}/wan-i2v"
    assert cmds[1].startswith(f"{hf_cli()} download Comfy-Org/Wan_2.1_ComfyUI_repackaged split_files/")
