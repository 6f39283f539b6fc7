"""One tiny Wan I2V saved the ways people have weights: diffusers folder, ComfyUI/original single
files, fp8 (e4m3fn, plain and "scaled") and GGUF Q8_0 — for the loading tests.

The original key layout is written by inverting diffusers' own single-file converters here; the
tests check that diffusers' converter maps these files back to exactly the diffusers keys.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import tiny_models as tm
import torch


def tiny_wan_for_layouts() -> Any:
    """A tiny Wan 2.1 I2V whose Linear rows are multiples of 32 (GGUF Q8_0 blocks) and whose VAE
    has the original 3-resnet decoder stages (the layout diffusers' converter expects)."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=2, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                           temperal_downsample=[False, True, True])
    tr = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16,
                               in_channels=36, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=64,
                               num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                               rope_max_seq_len=32, image_dim=4)
    pipe = WanImageToVideoPipeline(tokenizer=tm.t5_tokenizer(), text_encoder=tm._t5(), vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), transformer=tr,
                                   image_encoder=tm._vision(), image_processor=tm._fe())
    return pipe.to("cpu", torch.float32)


def save_configs(pipe: Any, root: Path) -> None:
    """The pipeline's model_index and component configs only (what studio/configs/ ships)."""
    tmp = root.parent / (root.name + ".full")
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    for f in tmp.rglob("*.json"):
        if f.parent.name == "tokenizer":
            continue
        dest = root / f.relative_to(tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    shutil.rmtree(tmp)


# ---- diffusers -> original key layout (inverse of diffusers' converters) ----------------------

_RES = {"norm1.gamma": "residual.0.gamma", "conv1.": "residual.2.", "norm2.gamma": "residual.3.gamma",
        "conv2.": "residual.6.", "conv_shortcut.": "shortcut."}


def _res(rest: str) -> str:
    for a, b in _RES.items():
        if rest.startswith(a):
            return b + rest[len(a):]
    return rest


def wan_vae_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AutoencoderKLWan keys -> the original Wan 2.1 VAE layout (`wan_2.1_vae.safetensors`)."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", k)
        if m:
            out[f"{m[1]}.middle.{2 * int(m[2])}.{_res(m[3])}"] = v
            continue
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", k)
        if m:
            out[f"{m[1]}.middle.1.{m[2]}"] = v
            continue
        m = re.match(r"(encoder|decoder)\.(norm_out\.gamma|conv_out\.|conv_in\.)(.*)", k)
        if m:
            head = {"norm_out.gamma": "head.0.gamma", "conv_out.": "head.2.", "conv_in.": "conv1."}[m[2]]
            out[f"{m[1]}.{head}{m[3]}"] = v
            continue
        m = re.match(r"(post_quant_conv|quant_conv)\.(.*)", k)
        if m:
            out[f"{'conv2' if m[1] == 'post_quant_conv' else 'conv1'}.{m[2]}"] = v
            continue
        m = re.match(r"encoder\.down_blocks\.(\d+)\.(.*)", k)
        if m:
            out[f"encoder.downsamples.{m[1]}.{_res(m[2])}"] = v
            continue
        m = re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k)
        if m:
            out[f"decoder.upsamples.{4 * int(m[1]) + int(m[2])}.{_res(m[3])}"] = v
            continue
        m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", k)
        if m:
            out[f"decoder.upsamples.{4 * int(m[1]) + 3}.{m[2]}"] = v
            continue
        out[k] = v
    return out


_TR = [("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
       ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
       ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
       ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
       ("condition_embedder.time_proj", "time_projection.1"),
       ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
       ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
       ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
       ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
       ("attn2", "cross_attn"), ("attn1", "self_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."),
       (".to_k.", ".k."), (".to_v.", ".v."), (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."),
       (".norm_added_k.", ".norm_k_img."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
       ("proj_out", "head.head")]


def wan_transformer_to_original(sd: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict:
    """WanTransformer3DModel keys -> the original/ComfyUI layout (`blocks.N.self_attn.q.weight`…)."""
    out = {}
    for k, v in sd.items():
        n = k
        for a, b in _TR:
            n = n.replace(a, b)
        if n == "scale_shift_table":
            n = "head.modulation"
        n = n.replace(".scale_shift_table", ".modulation")
        n = re.sub(r"\.norm([23])\.", lambda m: f".norm{5 - int(m[1])}.", n) if n.startswith("blocks.") else n
        out[prefix + n] = v
    return out


# ---- checks shared by the layout tests -------------------------------------------------------------

def fp8_gap(loaded: Any, frames: Any, ref: Any) -> float:
    """Check the transformer is stored in fp8 (>= 10 Fp8Linear layers, e4m3fn weights, compute in
    float32) and return the frames' mean abs difference from `ref`."""
    import numpy as np

    from studio.engines.fp8 import Fp8Linear
    tr = loaded.pipe.transformer
    layers = [m for m in tr.modules() if isinstance(m, Fp8Linear)]
    assert len(layers) >= 10 and all(m.weight.dtype == torch.float8_e4m3fn for m in layers)
    assert tr.dtype == torch.float32  # the pipeline casts latents to this: compute dtype, not fp8
    return float(np.abs(frames - ref).mean())


def gguf_count(loaded: Any) -> int:
    """How many of the loaded transformer's parameters are still GGUF-quantized."""
    from diffusers.quantizers.gguf.utils import GGUFParameter
    return sum(isinstance(p, GGUFParameter) for p in loaded.pipe.transformer.parameters())


# ---- writers --------------------------------------------------------------------------------------

def save_file(sd: dict[str, torch.Tensor], path: Path) -> Path:
    """safetensors of contiguous tensors."""
    from safetensors.torch import save_file as _save
    path.parent.mkdir(parents=True, exist_ok=True)
    _save({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def fp8_state(sd: dict[str, torch.Tensor], scaled: bool) -> dict[str, torch.Tensor]:
    """2-D weights as float8_e4m3fn (ComfyUI's fp8 files); scaled adds `.scale_weight` + marker."""
    from studio.engines.fp8 import quantize_fp8
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight") and v.dim() == 2 and "norm" not in k and "embed" not in k.split(".")[-2]:
            q, s = quantize_fp8(v, scaled)
            out[k] = q
            if s is not None:
                out[k[: -len(".weight")] + ".scale_weight"] = s
        else:
            out[k] = v.to(torch.bfloat16) if v.is_floating_point() else v
    if scaled:
        out["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    return out


def save_gguf_q8(sd: dict[str, torch.Tensor], path: Path, arch: str = "wan") -> int:
    """A city96-style GGUF: 2-D weights with rows of 32k values as Q8_0, the rest F32.  Returns the
    number of Q8_0 tensors."""
    import gguf
    import numpy as np
    w = gguf.GGUFWriter(str(path), arch=arch)
    n = 0
    for k, v in sd.items():
        a = v.detach().float().numpy()
        if a.ndim == 2 and a.shape[1] % 32 == 0 and k.endswith(".weight"):
            w.add_tensor(k, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            n += 1
        else:
            w.add_tensor(k, np.ascontiguousarray(a, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n


# ---- LTX-Video 0.9 ------------------------------------------------------------------------------

def tiny_ltx_for_layouts() -> Any:
    """A tiny LTX-Video I2V shaped like 0.9.0 (the layout diffusers' converter expects): VAE channels
    change after down blocks 0 and 1, the first three scale; transformer rows of 32 (GGUF blocks)."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )
    torch.manual_seed(0)
    chans, scale, layers = (8, 16, 32, 32), (True, True, True, False), (1, 1, 1, 1, 1)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=chans,
        decoder_block_out_channels=chans, layers_per_block=layers, decoder_layers_per_block=layers,
        spatio_temporal_scaling=scale, decoder_spatio_temporal_scaling=scale,
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True,
        decoder_causal=False)
    with torch.no_grad():  # non-trivial latent statistics, so a lost mean/std would show
        vae.latents_mean.copy_(torch.linspace(-0.2, 0.2, 8))
        vae.latents_std.copy_(torch.linspace(0.8, 1.2, 8))
    tr = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                    num_attention_heads=2, attention_head_dim=16, cross_attention_dim=32,
                                    num_layers=2, caption_channels=32)
    pipe = LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                   text_encoder=tm._t5(), tokenizer=tm.t5_tokenizer(), transformer=tr)
    return pipe.to("cpu", torch.float32)


_LTX_TR = [("proj_in", "patchify_proj"), ("time_embed", "adaln_single"), ("norm_q", "q_norm"),
           ("norm_k", "k_norm")]
# diffusers block -> LTX-Video 0.9.0 block index (the inverse of diffusers' VAE converter)
_LTX_ENC = [("down_blocks.0.downsamplers.0", "1"), ("down_blocks.0.conv_out", "2"), ("down_blocks.0", "0"),
            ("down_blocks.1.downsamplers.0", "4"), ("down_blocks.1.conv_out", "5"), ("down_blocks.1", "3"),
            ("down_blocks.2.downsamplers.0", "7"), ("down_blocks.2", "6"), ("down_blocks.3", "8"),
            ("mid_block", "9")]
_LTX_DEC = [("mid_block", "0"), ("up_blocks.0", "1"), ("up_blocks.1.upsamplers.0", "2"), ("up_blocks.1", "3"),
            ("up_blocks.2.conv_in", "4"), ("up_blocks.2.upsamplers.0", "5"), ("up_blocks.2", "6"),
            ("up_blocks.3.conv_in", "7"), ("up_blocks.3.upsamplers.0", "8"), ("up_blocks.3", "9")]


def ltx_transformer_to_original(sd: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict:
    """LTXVideoTransformer3DModel keys -> the original LTX-Video checkpoint's (`patchify_proj`…)."""
    out = {}
    for k, v in sd.items():
        n = k
        for a, b in _LTX_TR:
            n = n.replace(a, b)
        out[prefix + n] = v
    return out


def ltx_vae_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AutoencoderKLLTXVideo keys -> the LTX-Video 0.9.0 checkpoint's `vae.*` keys, with the
    per-channel statistics the original file carries (diffusers drops `channel`, `mean-of-stds`)."""
    out = {}
    for k, v in sd.items():
        if k in ("latents_mean", "latents_std"):
            stat = "mean-of-means" if k == "latents_mean" else "std-of-means"
            out[f"vae.per_channel_statistics.{stat}"] = v
            continue
        side, rest = k.split(".", 1)
        table, block = (_LTX_ENC, "down_blocks") if side == "encoder" else (_LTX_DEC, "up_blocks")
        for a, idx in table:
            if rest.startswith(a + "."):
                rest = f"{block}.{idx}.{rest[len(a) + 1:]}"
                break
        rest = (rest.replace(".resnets.", ".res_blocks.").replace("conv_shortcut.conv.", "conv_shortcut.")
                .replace(".norm3.", ".norm3.norm."))
        out[f"vae.{side}.{rest}"] = v
    n = sd["latents_mean"].numel()
    out["vae.per_channel_statistics.channel"] = torch.arange(n, dtype=torch.float32)
    out["vae.per_channel_statistics.mean-of-stds"] = torch.ones(n)
    return out
