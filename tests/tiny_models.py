"""Tiny random diffusers pipelines for CPU tests (the diffusers tests' way: a few channels, 32 px).

Nothing is downloaded: tokenizers are built here from a vocabulary written in code (a byte-level
CLIP BPE with no merges, and a word-level T5 stand-in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _byte_chars() -> list[str]:
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_tokenizer() -> Any:
    """A CLIPTokenizer over single bytes (no merges): 514 tokens."""
    from transformers import CLIPTokenizer
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _byte_chars():
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer() -> Any:
    """A word-level fast tokenizer that stands in for T5/UMT5 (pad 0, eos 1, unk 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in ("a the cat dog camera zoom zooming in out pan left right slowly fast clouds drifting "
              "water flowing wind trees astronaut rocket").split():
        vocab[w] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def _t5(d: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel
    return T5EncoderModel(T5Config(vocab_size=64, d_model=d, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, decoder_start_token_id=0))


def _vision(hidden: int = 4, proj: int = 4, image_size: int = 32, patch: int = 4) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    return CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=hidden, projection_dim=proj,
                                                          num_hidden_layers=2, num_attention_heads=2,
                                                          image_size=image_size, intermediate_size=16,
                                                          patch_size=patch))


def _fe() -> Any:
    from transformers import CLIPImageProcessor
    return CLIPImageProcessor(crop_size=32, size=32)


def tiny_i2vgen() -> Any:
    """I2VGenXLPipeline with random tiny components."""
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline, I2VGenXLUNet
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    unet = I2VGenXLUNet(block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4,
                        out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=4,
                        attention_head_dim=4, num_attention_heads=None, norm_num_groups=2)
    vae = AutoencoderKL(block_out_channels=(8,), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                        latent_channels=4, sample_size=32, norm_num_groups=2)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=4,
                                        intermediate_size=16, layer_norm_eps=1e-5, num_attention_heads=2,
                                        num_hidden_layers=2, vocab_size=600, projection_dim=4))
    sched = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                          rescale_betas_zero_snr=True, clip_sample=False, steps_offset=1,
                          timestep_spacing="leading")
    pipe = I2VGenXLPipeline(vae=vae, text_encoder=text, tokenizer=clip_tokenizer(), unet=unet,
                            scheduler=sched,
                            image_encoder=_vision(), feature_extractor=_fe())
    return pipe.to("cpu", torch.float32)


def tiny_svd() -> Any:
    """StableVideoDiffusionPipeline with random tiny components."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=8, num_attention_heads=2, projection_class_embeddings_input_dim=24,
        addition_time_embed_dim=8)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                                       down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                                       latent_channels=4)
    sched = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                   interpolation_type="linear", prediction_type="v_prediction",
                                       sigma_max=700.0,
                                   sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
                                   timestep_type="continuous", use_karras_sigmas=True)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=_vision(8, 8, 224, 32), unet=unet,
                                        scheduler=sched,
                                        feature_extractor=_fe())
    return pipe.to("cpu", torch.float32)


def tiny_ltx() -> Any:
    """LTXImageToVideoPipeline with random tiny components (VAE: 4× space, 4× time)."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False,
                                                                                     False, False),
        upsample_factor=(1, 1, 1, 1), timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False)
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    tr = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                    num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                    num_layers=1, caption_channels=32)
    pipe = LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_t5(),
                                   tokenizer=t5_tokenizer(), transformer=tr)
    return pipe.to("cpu", torch.float32)


def tiny_wan(ti2v: bool = False) -> Any:
    """WanImageToVideoPipeline: 2.1 I2V (CLIP image encoder) or 2.2 TI2V (expanded timesteps)."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    tr = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                               in_channels=16 if ti2v else 36, out_channels=16, text_dim=32, freq_dim=256,
                               ffn_dim=32, num_layers=2, cross_attn_norm=True,
                                   qk_norm="rms_norm_across_heads",
                               rope_max_seq_len=32, image_dim=None if ti2v else 4)
    kw: dict[str, Any] = {"expand_timesteps": True} if ti2v else {"image_encoder": _vision(),
                                                                  "image_processor": _fe()}
    pipe = WanImageToVideoPipeline(tokenizer=t5_tokenizer(), text_encoder=_t5(), vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), transformer=tr, **kw)
    return pipe.to("cpu", torch.float32)


BUILDERS = {"i2vgen-xl": tiny_i2vgen, "svd": tiny_svd, "svd-xt": tiny_svd, "ltx-video": tiny_ltx,
            "wan-i2v": tiny_wan, "wan2.2-ti2v": lambda: tiny_wan(ti2v=True)}


def write_lora(path: Path, model: Any, *, style: str = "diffusers", prefix: str = "unet", rank: int = 2,
               limit: int = 6, scale: float = 0.5, seed: int = 0) -> int:
    """Write a random LoRA for `model`'s attention Linear layers; returns how many layers it covers.

    style: "diffusers" (`<prefix>.<mod>.lora_A/B.weight`), "kohya" (`lora_unet_<mod_>.lora_down/up`
    + alpha) or "old" (`<prefix>.<mod>.lora.down/up.weight`).
    """
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    n = 0
    for name, m in model.named_modules():
        if n >= limit:
            break
        if not isinstance(m, torch.nn.Linear) or not any(k in name for k in ("to_q", "to_k", "to_v")):
            continue
        name = name.removesuffix(".base").removesuffix(".base_layer")  # already wrapped by a LoRA
        if ".lora_" in name:
            continue
        down = torch.randn(rank, m.in_features, generator=g) * scale
        up = torch.randn(m.out_features, rank, generator=g) * scale
        if style == "kohya":
            key = "lora_unet_" + name.replace(".", "_")
            sd[key + ".lora_down.weight"], sd[key + ".lora_up.weight"] = down, up
            sd[key + ".alpha"] = torch.tensor(float(rank))
        elif style == "old":
            sd[f"{prefix}.{name}.lora.down.weight"], sd[f"{prefix}.{name}.lora.up.weight"] = down, up
        else:
            sd[f"{prefix}.{name}.lora_A.weight"], sd[f"{prefix}.{name}.lora_B.weight"] = down, up
        n += 1
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return n
