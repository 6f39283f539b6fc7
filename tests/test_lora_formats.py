"""LoRAs from the wild on the tiny Wan and LTX pipelines: every layout built from ONE set of
low-rank matrices loads and changes the frames as the diffusers-format LoRA does; DoRA, `.diff`
and `.diff_b` match weights patched by hand; anything that would load partly or not at all is
refused at submit with a message naming the layout and the key count."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
import tiny_models as tm  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from studio.context import RunContext  # noqa: E402
from studio.engines import check_request, get_engine  # noqa: E402
from studio.loras import LoraError  # noqa: E402
from studio.request import GenerationRequest, LoraRef  # noqa: E402

CASES = {"wan-i2v": (5, 32, 32), "ltx-video": (9, 32, 32), "wan2.2-ti2v": (5, 32, 32)}
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
_PIPES: dict[str, object] = {}
RANK, ALPHA = 2, 1.0  # kohya/ComfyUI files scale by alpha/rank = 0.5
# the modules the LoRA covers, with Wan's original names (what ComfyUI and musubi files use)
WAN_MODS = {"blocks.0.attn1.to_q": "blocks.0.self_attn.q", "blocks.0.attn1.to_out.0": "blocks.0.self_attn.o",
            "blocks.1.attn2.to_k": "blocks.1.cross_attn.k",
            "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
            "condition_embedder.time_proj": "time_projection.1",
            "blocks.1.ffn.net.0.proj": "blocks.1.ffn.0", "blocks.0.ffn.net.2": "blocks.0.ffn.2",
            "proj_out": "head.head"}
LTX_MODS = {m: m for m in ("transformer_blocks.0.attn1.to_q", "transformer_blocks.0.attn1.to_out.0",
                           "transformer_blocks.0.attn2.to_v", "transformer_blocks.0.ff.net.0.proj",
                           "transformer_blocks.0.ff.net.2", "proj_out")}
MODS = {"wan-i2v": WAN_MODS, "wan2.2-ti2v": WAN_MODS, "ltx-video": LTX_MODS}


def pipe_for(eid: str):
    if eid not in _PIPES:
        _PIPES[eid] = tm.BUILDERS[eid]()
    return _PIPES[eid]


def request(eid: str, loras=()) -> GenerationRequest:
    frames, w, h = CASES[eid]
    req = GenerationRequest(image="in.png", prompt="a cat zooming in", engine=eid, frames=frames, width=w,
                            height=h, steps=2, guidance=3.0, seed=0, loras=list(loras))
    req.extra = {k: p.default for k, p in get_engine(eid).extra_spec().items()}
    return req


def run(eid: str, pipe=None, loras=()) -> np.ndarray:
    return get_engine(eid).run(pipe or pipe_for(eid), IMAGE, request(eid, loras), RunContext()).frames


def matrices(eid: str, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The one set of low-rank matrices (down, up) every layout below is written from."""
    g = torch.Generator().manual_seed(seed)
    tr = pipe_for(eid).transformer
    out = {}
    for m in MODS[eid]:
        lin = tr.get_submodule(m)
        lin = getattr(lin, "base_layer", lin)
        out[m] = (torch.randn(RANK, lin.in_features, generator=g) * 0.6,
                  torch.randn(lin.out_features, RANK, generator=g) * 0.6)
    return out


def flat(s: str) -> str:
    return s.replace(".", "_")


def write(path, eid: str, layout: str, only=None, extra=None) -> None:
    """Write the matrices in `layout`; `only` limits the modules (a partial module set)."""
    sd: dict[str, torch.Tensor] = {}
    for mod, (down, up) in matrices(eid).items():
        if only and mod not in only:
            continue
        nat = MODS[eid][mod]
        if layout == "diffusers":  # alpha folded in, as diffusers/peft files are
            sd[f"transformer.{mod}.lora_A.weight"] = down * (ALPHA / RANK)
            sd[f"transformer.{mod}.lora_B.weight"] = up
            continue
        base, (d, u) = {
            "comfyui": (f"diffusion_model.{nat}", ("lora_down", "lora_up")),
            "comfyui_AB": (f"diffusion_model.{nat}", ("lora_A", "lora_B")),
            "kohya": (f"lora_unet_{flat(nat)}", ("lora_down", "lora_up")),
            "kohya__": (f"lora_unet__{flat(nat)}", ("lora_down", "lora_up")),
            "kohya_diffusers_names": (f"lora_unet_{flat(mod)}", ("lora_down", "lora_up")),
        }[layout]
        sd[f"{base}.{d}.weight"], sd[f"{base}.{u}.weight"] = down, up
        sd[f"{base}.alpha"] = torch.tensor(ALPHA)
    sd.update(extra or {})
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


@pytest.fixture()
def lora_dir(tmp_path, monkeypatch):
    d = tmp_path / "loras"
    d.mkdir()
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(d))
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "models"))
    for eid in CASES:  # the submit check reads the tiny transformers' configs (no weights)
        _tiny_config(eid, tmp_path / "models")
    return d


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


@pytest.mark.parametrize("eid", ["wan-i2v", "ltx-video"])
def test_every_layout_loads_as_the_diffusers_lora_does(eid, lora_dir):
    base = run(eid)
    write(lora_dir / f"ref-{eid}.safetensors", eid, "diffusers")
    ref = run(eid, loras=[LoraRef(f"ref-{eid}", 1.0)])
    assert np.abs(ref.astype(int) - base.astype(int)).max() > 10  # the LoRA does something
    layouts = ["comfyui", "comfyui_AB", "kohya", "kohya__", "kohya_diffusers_names"]
    for lay in layouts:
        name = f"{lay}-{eid}"
        write(lora_dir / f"{name}.safetensors", eid, lay)
        check_request(request(eid, [LoraRef(name, 1.0)]))  # the submit check passes
        got = run(eid, loras=[LoraRef(name, 1.0)])
        assert close(got, ref), (lay, np.abs(got.astype(int) - ref.astype(int)).max())
        half = run(eid, loras=[LoraRef(name, 0.5)])
        assert not close(half, ref) and not close(half, base)
    assert np.array_equal(run(eid, loras=[LoraRef(f"kohya-{eid}", 0.0)]), base)  # strength 0 = base
    # a partial module set (kohya, attention only) equals the diffusers LoRA of the same modules
    part = [m for m in MODS[eid] if "attn1" in m]
    write(lora_dir / f"kp-{eid}.safetensors", eid, "kohya", only=part)
    write(lora_dir / f"dp-{eid}.safetensors", eid, "diffusers", only=part)
    kp, dp = run(eid, loras=[LoraRef(f"kp-{eid}", 1.0)]), run(eid, loras=[LoraRef(f"dp-{eid}", 1.0)])
    assert close(kp, dp) and not close(kp, ref) and not close(kp, base)


def _patched(eid: str, fn) -> np.ndarray:
    """Frames of a fresh tiny pipeline (same seed, same weights) whose layers `fn` edits by hand."""
    pipe = tm.BUILDERS[eid]()
    with torch.no_grad():
        fn(pipe.transformer)
    return run(eid, pipe=pipe)


def test_comfyui_diff_diff_b_and_zero_norm_diffs_match_hand_patched_weights(lora_dir):
    eid = "wan-i2v"
    g = torch.Generator().manual_seed(5)
    tr = pipe_for(eid).transformer
    v = getattr(tr.blocks[1].attn1.to_v, "base_layer", tr.blocks[1].attn1.to_v)
    diff = torch.randn(v.out_features, v.in_features, generator=g) * 0.3
    diff_b = torch.randn(24, generator=g) * 0.5
    extra = {"diffusion_model.blocks.1.self_attn.v.diff": diff,
             "diffusion_model.blocks.0.self_attn.q.diff_b": diff_b,
             "diffusion_model.blocks.0.norm3.diff": torch.zeros(24),
             "diffusion_model.blocks.0.self_attn.norm_q.diff": torch.zeros(24)}
    write(lora_dir / "full.safetensors", eid, "comfyui", extra=extra)
    got = run(eid, loras=[LoraRef("full", 1.0)])

    def patch(t):
        for mod, (down, up) in matrices(eid).items():
            t.get_submodule(mod).weight += (up @ down) * (ALPHA / RANK)
        t.blocks[1].attn1.to_v.weight += diff
        t.blocks[0].attn1.to_q.bias += diff_b
    want = _patched(eid, patch)
    assert close(got, want), np.abs(got.astype(int) - want.astype(int)).max()
    # a nonzero norm diff cannot be applied without touching the base: refused, named
    extra["diffusion_model.blocks.0.norm3.diff"] = torch.ones(24)
    write(lora_dir / "normy.safetensors", eid, "comfyui", extra=extra)
    with pytest.raises(LoraError, match=r"ComfyUI/original.*nonzero norm-layer diff"):
        run(eid, loras=[LoraRef("normy", 1.0)])


def test_dora_scale_is_applied_as_dora(lora_dir):
    eid = "wan-i2v"
    base = run(eid)
    g = torch.Generator().manual_seed(7)
    mats = matrices(eid)
    tr = tm.BUILDERS[eid]().transformer
    mags = {m: tr.get_submodule(m).weight.detach().norm(dim=1)
            * (1 + 0.5 * torch.rand(up.shape[0], generator=g)) for m, (_, up) in mats.items()}
    extra = {f"lora_unet_{flat(WAN_MODS[m])}.dora_scale": mag[:, None] for m, mag in mags.items()}
    write(lora_dir / "dora.safetensors", eid, "kohya", extra=extra)
    got = run(eid, loras=[LoraRef("dora", 1.0)])

    def patch(t):
        for mod, (down, up) in mats.items():
            lin = t.get_submodule(mod)
            w = lin.weight + (up @ down) * (ALPHA / RANK)
            lin.weight.copy_(mags[mod][:, None] * w / w.norm(dim=1, keepdim=True))
    want = _patched(eid, patch)
    assert close(got, want) and not close(got, base)
    assert np.array_equal(run(eid, loras=[LoraRef("dora", 0.0)]), base)  # off = exactly the base
    # DoRA on the input axis has no peft form: refused plainly
    extra = {f"lora_unet_{flat(WAN_MODS[m])}.dora_scale": torch.ones(1, down.shape[1])
             for m, (down, _) in mats.items()}
    write(lora_dir / "dora_in.safetensors", eid, "kohya", extra=extra)
    with pytest.raises(LoraError, match="kohya/musubi.*input axis"):
        run(eid, loras=[LoraRef("dora_in", 1.0)])


def _tiny_config(eid: str, models_dir) -> None:
    """Put the tiny transformer's config where the submit check looks (models/<engine>/transformer)."""
    pipe_for(eid).transformer.save_config(models_dir / get_engine(eid).engine_dir / "transformer")


@pytest.mark.parametrize("eid", ["wan-i2v", "wan2.2-ti2v", "ltx-video"])
def test_unet_lora_is_refused_for_wan_and_ltx_with_the_key_count(eid, lora_dir):
    from studio.loras import read_shapes
    p = lora_dir / "sd.safetensors"
    tm.write_lora(p, tm.tiny_i2vgen().unet, prefix="unet", limit=5)
    n = len(read_shapes(p))
    assert n == 10
    with pytest.raises(LoraError) as e:
        check_request(request(eid, [LoraRef("sd", 1.0)]))
    assert f"none of its {n} keys fit engine '{eid}'" in str(e.value) and "UNet" in str(e.value), str(e.value)


def test_submit_refuses_no_op_partial_and_foreign_layouts(lora_dir, tmp_path):
    eid = "wan-i2v"
    mats = matrices(eid)
    # matches nothing: a LoRA for layers this model does not have
    save_file({"diffusion_model.blocks.7.self_attn.q.lora_down.weight": torch.zeros(2, 24),
               "diffusion_model.blocks.7.self_attn.q.lora_up.weight": torch.zeros(24, 2)},
              str(lora_dir / "none.safetensors"))
    with pytest.raises(LoraError, match=r"ComfyUI/original layout.*none of its 2 keys fit engine 'wan-i2v'"):
        check_request(request(eid, [LoraRef("none", 1.0)]))
    # partly: good kohya keys plus keys of a missing block, and text-encoder keys
    junk = {"lora_unet_blocks_9_ffn_0.lora_down.weight": torch.zeros(2, 24),
            "lora_unet_blocks_9_ffn_0.lora_up.weight": torch.zeros(32, 2),
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 8),
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(8, 2)}
    write(lora_dir / "part.safetensors", eid, "kohya", extra=junk)
    n_good = 3 * len(mats)
    with pytest.raises(LoraError, match=rf"kohya/musubi layout.*{n_good} of its {n_good + 4} keys match "
                                        r"engine 'wan-i2v'; refused, it would load only partly"
                                        r".*text-encoder"):
        check_request(request(eid, [LoraRef("part", 1.0)]))
    # wrong shapes (a LoRA for a bigger Wan): named with both shapes
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(2, 5120),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(5120, 2)},
              str(lora_dir / "big.safetensors"))
    with pytest.raises(LoraError, match=r"trained for wan2.1-t2v-14b.*\[2, 5120\].*\[24, 24\]"):
        check_request(request(eid, [LoraRef("big", 1.0)]))
    # LyCORIS LoKr and an incomplete pair
    save_file({"lora_unet_blocks_0_self_attn_q.lokr_w1": torch.zeros(4, 4),
               "lora_unet_blocks_0_self_attn_q.lokr_w2": torch.zeros(6, 6)},
              str(lora_dir / "lokr.safetensors"))
    with pytest.raises(LoraError, match="LyCORIS"):
        check_request(request(eid, [LoraRef("lokr", 1.0)]))
    down, _ = mats["blocks.0.attn1.to_q"]
    save_file({"lora_unet_blocks_0_self_attn_q.lora_down.weight": down}, str(lora_dir / "half.safetensors"))
    with pytest.raises(LoraError, match="lora_up is missing"):
        check_request(request(eid, [LoraRef("half", 1.0)]))
    # an I2V LoRA (image cross-attention) on Wan 2.2 TI2V, which has none: partial, refused
    write(lora_dir / "i2v.safetensors", eid, "comfyui")
    with pytest.raises(LoraError, match=r"only partly"):
        check_request(request("wan2.2-ti2v", [LoraRef("i2v", 1.0)]))
    # and the good file passes both checks
    write(lora_dir / "good.safetensors", eid, "comfyui", only=[m for m in mats if "image_embedder" not in m])
    check_request(request(eid, [LoraRef("good", 1.0)]))
    check_request(request("wan2.2-ti2v", [LoraRef("good", 1.0)]))


def test_family_is_read_from_names_and_shapes(tmp_path):
    from studio.loras import guess_family, read_shapes

    def fam(keys: dict[str, tuple]) -> str | None:
        p = tmp_path / "x.safetensors"
        save_file({k: torch.zeros(s) for k, s in keys.items()}, str(p))
        return guess_family(read_shapes(p))[0]
    q = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": (2, 5120),
         "diffusion_model.blocks.0.self_attn.q.lora_up.weight": (5120, 2)}
    img = {"diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight": (2, 5120)}
    assert fam(q) == "wan2.1-t2v-14b" and fam({**q, **img}) == "wan2.1-i2v-14b"
    assert fam({"lora_unet_blocks_0_self_attn_q.lora_down.weight": (2, 3072)}) == "wan2.2-ti2v-5b"
    assert fam({"transformer.blocks.0.attn1.to_q.lora_A.weight": (2, 1536)}) == "wan2.1-t2v-1.3b"
    assert fam({"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": (2, 2048)}) == "ltx-video"
    assert fam({"unet.down_blocks.0.attentions.0.to_q.lora_A.weight": (2, 320)}) == "unet"
    assert fam({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (2, 320)}) == "unet"
