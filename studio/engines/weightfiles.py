"""Single weight files as people have them: what a file holds, read from its header only.

`probe(path)` reads a `.safetensors` header (or a `.gguf` tensor table) without loading weights
and says which component kinds it holds (a Wan transformer, a Wan VAE, a T5/UMT5 text encoder, a
CLIP vision encoder, an LTX transformer and/or VAE, an LTX-2 transformer), in which key layout
(the original/ComfyUI one or diffusers'), its storage precision (bf16, fp16, fp32, fp8 e4m3fn,
fp8 "scaled", GGUF Q8_0, …) and size.  `converted_shapes` maps the header through diffusers' own
single-file key converters (on meta tensors), so `fit_problems` can compare a file with an engine's
component exactly.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

PREFIXES = ("model.diffusion_model.", "diffusion_model.")

# component class -> the kind of file that can fill it
KIND_OF_CLASS = {
    "WanTransformer3DModel": "wan_transformer", "AutoencoderKLWan": "wan_vae",
    "LTXVideoTransformer3DModel": "ltx_transformer", "AutoencoderKLLTXVideo": "ltx_vae",
    "LTX2VideoTransformer3DModel": "ltx2_transformer", "AutoencoderKLLTX2Video": "ltx2_vae",
    "AutoencoderKLLTX2Audio": "ltx2_audio_vae", "LTX2Vocoder": "ltx2_vocoder",
    "LTX2TextConnectors": "ltx2_connectors",
    "UMT5EncoderModel": "t5_encoder", "T5EncoderModel": "t5_encoder",
    "CLIPVisionModel": "clip_vision", "CLIPVisionModelWithProjection": "clip_vision",
}

# kind -> (original-layout marker keys, diffusers-layout marker keys)
_MARKERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "wan_transformer": (("head.modulation",), ("scale_shift_table", "condition_embedder.time_proj.weight")),
    "wan_vae": (("decoder.middle.0.residual.0.gamma",), ("decoder.mid_block.resnets.0.norm1.gamma",)),
    "ltx_transformer": (("patchify_proj.weight",), ("proj_in.weight", "time_embed.linear.weight")),
    # LTX-2: the audio-video cross-attention gates mark it (a whole checkpoint also holds the VAEs,
    # the text connectors and the vocoder: only the transformer's keys are taken from it)
    "ltx2_transformer": (("av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight",),
                         ("av_cross_attn_video_a2v_gate.emb.timestep_embedder.linear_1.weight",)),
    # (an original LTX-2 video VAE is recognised inside a whole checkpoint only: alone, its keys are
    # those of LTX-Video 0.9's)
    "ltx2_vae": (("vae.per_channel_statistics.mean-of-means",
                  "audio_vae.per_channel_statistics.mean-of-means"),
                 ("latents_mean", "decoder.conv_in.conv.weight")),
    "ltx2_audio_vae": (("audio_vae.per_channel_statistics.mean-of-means",),
                       ("latents_mean", "decoder.conv_in.conv.weight",
                        "encoder.down.0.block.0.conv1.conv.weight")),
    "ltx2_vocoder": (("vocoder.conv_pre.weight",), ("conv_in.weight", "upsamplers.0.weight")),
    "ltx2_connectors": (("text_embedding_projection.aggregate_embed.weight",), ("text_proj_in.weight",)),
    "ltx_vae": (("vae.per_channel_statistics.mean-of-means",),
                ("latents_mean", "decoder.conv_in.conv.weight")),
    "t5_encoder": ((), ("encoder.block.0.layer.0.SelfAttention.q.weight",)),
    "clip_vision": ((), ("vision_model.embeddings.patch_embedding.weight",)),
}
_ST_DTYPES = {"F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2", "BF16": "bf16", "F16": "fp16", "F32": "fp32",
              "F64": "fp64"}


@dataclass(frozen=True)
class FileInfo:
    """What one weight file holds (from its header)."""

    path: Path
    fmt: str                       # "safetensors" or "gguf"
    kinds: dict[str, str]          # kind -> "original" | "diffusers"
    precision: str                 # e.g. "bf16", "fp8_e4m3fn", "fp8_e4m3fn scaled", "gguf Q8_0"
    size_bytes: int
    shapes: dict[str, tuple[int, ...]] = field(repr=False, compare=False, default_factory=dict)
    dtypes: dict[str, str] = field(repr=False, compare=False, default_factory=dict)

    @property
    def fp8(self) -> bool:
        """Stored in float8 (kept that way when loaded)."""
        return self.precision.startswith("fp8")

    @property
    def label(self) -> str:
        """'safetensors fp8_e4m3fn scaled, 14.3 GB' and the like."""
        return f"{self.fmt if self.fmt == 'safetensors' else ''} {self.precision}".strip()


def _strip(key: str) -> str:
    for p in PREFIXES:
        if key.startswith(p):
            return key[len(p):]
    return key


def _safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 200 << 20:
            raise ValueError(f"{path} does not look like a safetensors file (header of {n} bytes)")
        return json.loads(f.read(n))


def _gguf_tables(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    import gguf
    r = gguf.GGUFReader(str(path))
    shapes = {t.name: tuple(int(x) for x in reversed(list(t.shape))) for t in r.tensors}
    return shapes, {t.name: t.tensor_type.name for t in r.tensors}


def _kinds(keys: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for kind, (orig, diff) in _MARKERS.items():
        if orig and all(k in keys for k in orig):
            out[kind] = "original"
        elif all(k in keys for k in diff):
            out[kind] = "diffusers"
    for ltx in ("ltx_vae", "ltx2_vae"):
        if out.get(ltx) == "diffusers" and ("wan_vae" in out or "ltx2_audio_vae" in out):
            del out[ltx]
    if out.get("ltx2_audio_vae") == "diffusers":
        out.pop("ltx2_vae", None)
    return out


def _precision(fmt: str, dtypes: dict[str, str], keys: set[str]) -> str:
    big = [d for k, d in dtypes.items() if k.endswith(".weight")]
    if fmt == "gguf":
        quant = sorted({d for d in big if d not in ("F32", "F16", "BF16")})
        return "gguf " + ("+".join(quant) if quant else "+".join(sorted(set(big))) or "?")
    counts: dict[str, int] = {}
    for d in big:
        counts[d] = counts.get(d, 0) + 1
    top = max(counts, key=counts.get) if counts else "?"  # type: ignore[arg-type]
    name = _ST_DTYPES.get(top, top.lower())
    if name.startswith("fp8") and ("scaled_fp8" in keys or any(k.endswith(".scale_weight") for k in keys)):
        name += " scaled"
    return name


@lru_cache(maxsize=256)
def _probe_cached(path: str, mtime: float, size: int) -> FileInfo | None:
    p = Path(path)
    try:
        if p.suffix == ".gguf":
            shapes, dtypes = _gguf_tables(p)
            fmt = "gguf"
        else:
            header = _safetensors_header(p)
            header.pop("__metadata__", None)
            shapes = {k: tuple(v["shape"]) for k, v in header.items()}
            dtypes = {k: v["dtype"] for k, v in header.items()}
            fmt = "safetensors"
    except Exception:  # noqa: BLE001 - not a weight file we can read: not a candidate
        return None
    shapes = {_strip(k): v for k, v in shapes.items()}
    dtypes = {_strip(k): v for k, v in dtypes.items()}
    keys = set(shapes)
    kinds = _kinds(keys)
    if not kinds:
        return None
    return FileInfo(p, fmt, kinds, _precision(fmt, dtypes, keys), size, shapes, dtypes)


def probe(path: Path) -> FileInfo | None:
    """What `path` holds, or None when it is no weight file of a known kind."""
    st = path.stat()
    return _probe_cached(str(path), st.st_mtime, st.st_size)


def scan(roots: list[Path]) -> list[FileInfo]:
    """Every known weight file under `roots` (recursively), skipping diffusers component folders."""
    out: list[FileInfo] = []
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for f in sorted(root.rglob("*")):
            if f.suffix not in (".safetensors", ".gguf") or not f.is_file() or f in seen:
                continue
            if (f.parent / "config.json").is_file() or f.name.startswith("."):
                continue  # a shard of a diffusers/transformers folder
            seen.add(f)
            info = probe(f)
            if info is not None:
                out.append(info)
    return out


def _renamer(prefixes: tuple[str, ...], strip: str, renames: tuple[tuple[str, str], ...]) -> Any:
    """An original->diffusers converter: keep the keys under `prefixes`, drop `strip`, rename."""
    def fn(sd: dict[str, Any], **_: Any) -> dict[str, Any]:
        out = {}
        for k, v in sd.items():
            if not k.startswith(prefixes):
                continue
            k = k.removeprefix(strip)
            for a, b in renames:
                k = k.replace(a, b)
            out[k] = v
        return out
    return fn


# LTX-2's vocoder and text connectors, which diffusers' single-file loader does not cover (the key
# renames of its conversion script, scripts/convert_ltx2_to_diffusers.py, for the 2.0 checkpoint)
OWN_CONVERTERS = {
    "LTX2Vocoder": _renamer(("vocoder.",), "vocoder.", (("ups.", "upsamplers."), ("resblocks", "resnets"),
                                                         ("conv_pre", "conv_in"), ("conv_post", "conv_out"))),
    "LTX2TextConnectors": _renamer(
        ("video_embeddings_connector.", "audio_embeddings_connector.", "text_embedding_projection.",
         "connectors."), "connectors.",
        (("video_embeddings_connector", "video_connector"), ("audio_embeddings_connector", "audio_connector"),
         ("transformer_1d_blocks", "transformer_blocks"),
         ("text_embedding_projection.aggregate_embed", "text_proj_in"),
         ("q_norm", "norm_q"), ("k_norm", "norm_k"))),
}


def converter(cls_name: str) -> Any:
    """diffusers' original->diffusers key converter for a model class (None for transformers)."""
    if cls_name in ("UMT5EncoderModel", "T5EncoderModel", "CLIPVisionModel", "CLIPVisionModelWithProjection"):
        return None
    if cls_name in OWN_CONVERTERS:
        return OWN_CONVERTERS[cls_name]
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
    return SINGLE_FILE_LOADABLE_CLASSES[cls_name]["checkpoint_mapping_fn"]


def convert(sd: dict[str, Any], kind_layout: str, cls_name: str) -> dict[str, Any]:
    """Keys of `sd` (prefixes stripped) in the diffusers layout of `cls_name`."""
    sd = {_strip(k): v for k, v in sd.items()}
    if cls_name == "LTX2VideoTransformer3DModel":
        sd = ltx2_transformer_keys(sd)
    fn = converter(cls_name)
    if kind_layout == "original" and fn is not None:
        # a whole LTX-2 checkpoint: each VAE takes only its own prefix's keys
        for vae_cls, pre in (("AutoencoderKLLTX2Video", "vae."), ("AutoencoderKLLTX2Audio", "audio_vae.")):
            if cls_name == vae_cls:
                own = {k: v for k, v in sd.items() if k.startswith(pre)}
                sd = own or {pre + k: v for k, v in sd.items()}
        if cls_name == "AutoencoderKLLTXVideo":
            # a whole LTX checkpoint carries the transformer too: only its `vae.*` keys are the VAE
            if any(k.startswith("vae.") for k in sd):
                sd = {k: v for k, v in sd.items() if k.startswith("vae.")}
            else:
                sd = {"vae." + k: v for k, v in sd.items()}
        sd = fn(sd)
    elif cls_name in ("AutoencoderKLLTXVideo", "AutoencoderKLLTX2Video"):
        sd = {k.removeprefix("vae."): v for k, v in sd.items()}
    return sd


LTX2_NOT_TRANSFORMER = ("vae.", "audio_vae.", "vocoder.", "text_embedding_projection.", "connectors.",
                        "video_embeddings_connector.", "audio_embeddings_connector.", "duration_head.")


def ltx2_transformer_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """The transformer's keys of an LTX-2 file (a whole checkpoint's other components left out)."""
    return {k: v for k, v in sd.items() if not k.startswith(LTX2_NOT_TRANSFORMER)}


def converted_shapes(info: FileInfo, kind: str, cls_name: str) -> dict[str, tuple[int, ...]]:
    """The file's tensor shapes under diffusers key names (fp8 scales and markers left out)."""
    import torch

    from .fp8 import MARKERS, SCALE_SUFFIXES
    metas = {k: torch.empty(s, device="meta") for k, s in info.shapes.items()
             if k not in MARKERS and not k.endswith(SCALE_SUFFIXES) and k != "spiece_model"}
    return {k: tuple(v.shape) for k, v in convert(metas, info.kinds[kind], cls_name).items()}


# keys a file may lack (tied or rebuilt at load) or carry extra, per component class
ALLOWED_MISSING = {"UMT5EncoderModel": ("encoder.embed_tokens.weight",),
                   "T5EncoderModel": ("encoder.embed_tokens.weight",)}
ALLOWED_EXTRA = {"CLIPVisionModel": ("visual_projection.weight",)}


def fit_problems(expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]],
                 cls_name: str) -> list[str]:
    """Why a converted file does not fill a component ([] when it does: same keys, same shapes)."""
    allowed_missing = set(ALLOWED_MISSING.get(cls_name, ()))
    allowed_extra = set(ALLOWED_EXTRA.get(cls_name, ()))
    missing = sorted(set(expected) - set(got) - allowed_missing)
    extra = sorted(set(got) - set(expected) - allowed_extra)
    wrong = sorted(k for k in set(expected) & set(got) if tuple(expected[k]) != tuple(got[k]))
    out = []
    if missing:
        out.append(f"{len(missing)} keys missing (e.g. {missing[0]})")
    if extra:
        out.append(f"{len(extra)} unexpected keys (e.g. {extra[0]})")
    if wrong:
        k = wrong[0]
        out.append(f"{len(wrong)} shapes differ (e.g. {k}: file {got[k]}, model {expected[k]})")
    return out
