"""Tiny random LTX-2 and HunyuanVideo 1.5 I2V pipelines for CPU tests, from the sizes of diffusers'
own tiny test components (tests/pipelines/ltx2, tests/pipelines/hunyuan_video1_5); the Gemma, Qwen
and ByT5 pieces are built here from configs written in code, so nothing is downloaded."""

from __future__ import annotations

from typing import Any

import tiny_models as tm
import torch


def _word_tokenizer(cls_pad: str = "<pad>") -> Any:
    """The word-level stand-in tokenizer with a chat template (Qwen's pipeline calls it)."""
    tok = tm.t5_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    tok.model_max_length = 16
    return tok


def _gemma3() -> Any:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    text = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=8,
        max_position_embeddings=64,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
    )
    cfg = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        image_token_index=5,
        boi_token_index=6,
        eoi_token_index=7,
    )
    return Gemma3ForConditionalGeneration(cfg)


def tiny_ltx2() -> Any:
    """LTX2ImageToVideoPipeline: the diffusers test components (VAE 1 block, 2-layer DiT, tiny
    audio VAE with 8 mel bins, a 16× vocoder: 100 mel frames a second become 1600 samples)."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2ImageToVideoPipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    torch.manual_seed(0)
    te = _gemma3()
    hid, layers = te.config.text_config.hidden_size, te.config.text_config.num_hidden_layers
    torch.manual_seed(0)
    tr = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=hid,
        rope_double_precision=False,
        rope_type="split",
    )
    conn = LTX2TextConnectors(
        caption_channels=hid,
        text_proj_in_factor=layers + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatial",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    voc = LTX2Vocoder(
        in_channels=16,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[8, 8],
        upsample_factors=[4, 4],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=1600,
    )
    pipe = LTX2ImageToVideoPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=te,
        tokenizer=_word_tokenizer(),
        connectors=conn,
        transformer=tr,
        vocoder=voc,
    )
    return pipe.to("cpu", torch.float32)


def tiny_upsampler() -> Any:
    """LTX2LatentUpsamplerModel for the tiny LTX-2 (4 latent channels)."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    torch.manual_seed(0)
    return LTX2LatentUpsamplerModel(in_channels=4, mid_channels=32, num_blocks_per_stage=1)


def tiny_hunyuan15(target_size: int = 64) -> Any:
    """HunyuanVideo15ImageToVideoPipeline: the diffusers test sizes with the I2V input (2·4+1
    channels), a tiny SigLIP image encoder and a bucket area of `target_size`² on a 4-pixel grid."""
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15ImageToVideoPipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import (
        ByT5Tokenizer,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLTextModel,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
        T5Config,
        T5EncoderModel,
    )

    torch.manual_seed(0)
    tr = HunyuanVideo15Transformer3DModel(
        in_channels=9,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        text_embed_2_dim=32,
        image_embed_dim=12,
        rope_axes_dim=(2, 2, 4),
        target_size=target_size,
        task_type="i2v",
    )
    vae = AutoencoderKLHunyuanVideo15(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16),
        layers_per_block=1,
        spatial_compression_ratio=4,
        temporal_compression_ratio=2,
        downsample_match_channel=False,
        upsample_match_channel=False,
    )
    qwen = Qwen2_5_VLTextModel(
        Qwen2_5_VLTextConfig(
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=64,
            rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            rope_theta=1000000.0,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=400,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
        )
    )
    sig = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=12,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        )
    )
    fe = SiglipImageProcessor(size={"height": 16, "width": 16})
    tok = _word_tokenizer()
    pipe = HunyuanVideo15ImageToVideoPipeline(
        text_encoder=qwen,
        tokenizer=tok,
        transformer=tr,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        text_encoder_2=t5,
        tokenizer_2=ByT5Tokenizer(),
        guider=ClassifierFreeGuidance(guidance_scale=6.0),
        image_encoder=sig,
        feature_extractor=fe,
    )
    pipe.tokenizer_max_length = 16
    pipe.prompt_template_encode_start_idx = 0
    return pipe.to("cpu", torch.float32)


# diffusers -> original (Lightricks/ComfyUI) LTX-2 transformer keys: the inverse of diffusers'
# `convert_ltx2_transformer_to_diffusers` renames (checked by a round trip in the layout test)
_LTX2_TO_ORIGINAL = [
    ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
    ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
    ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
    ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
    ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
    ("norm_q", "q_norm"), ("norm_k", "k_norm"),
]


def ltx2_transformer_to_original(sd: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict:
    """LTX2VideoTransformer3DModel keys -> the original checkpoint's (`patchify_proj`, `adaln_single`…)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("time_embed."):
            k = "adaln_single." + k[len("time_embed."):]
        elif k.startswith("audio_time_embed."):
            k = "audio_adaln_single." + k[len("audio_time_embed."):]
        elif k.startswith("proj_in."):
            k = "patchify_proj." + k[len("proj_in."):]
        elif k.startswith("audio_proj_in."):
            k = "audio_patchify_proj." + k[len("audio_proj_in."):]
        for a, b in _LTX2_TO_ORIGINAL:
            k = k.replace(a, b)
        out[prefix + k] = v
    return out


def _swap(sd: dict[str, torch.Tensor], prefix: str, renames: list[tuple[str, str]]) -> dict:
    out = {}
    for k, v in sd.items():
        for a, b in renames:
            k = k.replace(a, b)
        out[prefix + k] = v
    return out


def ltx2_audio_vae_to_original(sd: dict[str, torch.Tensor]) -> dict:
    """AutoencoderKLLTX2Audio keys -> the whole checkpoint's `audio_vae.*` keys."""
    return _swap(sd, "audio_vae.", [("latents_mean", "per_channel_statistics.mean-of-means"),
                                    ("latents_std", "per_channel_statistics.std-of-means")])


def ltx2_vocoder_to_original(sd: dict[str, torch.Tensor]) -> dict:
    """LTX2Vocoder keys -> `vocoder.*` (ups, resblocks, conv_pre, conv_post)."""
    return _swap(sd, "vocoder.", [("upsamplers.", "ups."), ("resnets", "resblocks"), ("conv_in", "conv_pre"),
                                  ("conv_out", "conv_post")])


def ltx2_connectors_to_original(sd: dict[str, torch.Tensor]) -> dict:
    """LTX2TextConnectors keys -> the embeddings connectors inside `model.diffusion_model.` and the
    text projection at the top level, as in the original checkpoint."""
    out = {}
    for k, v in sd.items():
        if k.startswith("text_proj_in."):
            out["text_embedding_projection.aggregate_embed." + k[len("text_proj_in."):]] = v
            continue
        k = k.replace("video_connector", "video_embeddings_connector")
        k = k.replace("audio_connector", "audio_embeddings_connector")
        k = k.replace("transformer_blocks", "transformer_1d_blocks")
        out["model.diffusion_model." + k.replace("norm_q", "q_norm").replace("norm_k", "k_norm")] = v
    return out
