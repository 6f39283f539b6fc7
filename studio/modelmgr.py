"""Model manager for the diffusion engines: find weights, load one pipeline, memory modes, speed-ups.

- Weights are looked up in `models/<engine>/` (diffusers folder layout) and then in the local
  Hugging Face cache, always with `HF_HUB_OFFLINE=1`: nothing is downloaded at run time.  Missing
  or partial weights raise `WeightsError` with the exact `hf download` command (huggingface_hub's CLI).
- Precision: fp16 (bf16 where the engine asks) on CUDA, fp32 on CPU.
- One pipeline is kept loaded; asking for another evicts it first (behind a lock).
- Memory modes: full, model_offload, sequential_offload; VAE slicing/tiling as flags.
- `optimize()` applies only output-preserving speed-ups (SDPA with padded head dims, fused QKV,
  channels-last VAE, regional `torch.compile` with a persistent cache).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .weights import WeightsError, WeightsStatus, models_dir

log = logging.getLogger(__name__)

MEMORY_MODES = ("full", "model_offload", "sequential_offload")
_SKIP_COMPONENTS = {"scheduler", "tokenizer", "tokenizer_2", "feature_extractor", "image_processor", "guider"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def download_command(repo: str, engine_dir: str) -> str:
    """The exact command that fetches an engine's weights into models/<engine_dir>: the `hf` beside
    this Python and an absolute folder, so it works as shown from any directory."""
    import shlex

    from .hubfetch import hf_cli
    return shlex.join([hf_cli(), "download", repo, "--local-dir", str((models_dir() / engine_dir).resolve())])


def _hf_cache_snapshots(repo: str) -> list[Path]:
    """Snapshot folders of `repo` in the local HF cache (newest first); never touches the network."""
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    roots.append(Path.home() / ".cache" / "huggingface" / "hub")
    out: list[Path] = []
    for root in roots:
        snaps = root / ("models--" + repo.replace("/", "--")) / "snapshots"
        if snaps.is_dir():
            out += sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    return out


def check_folder(path: Path) -> list[str]:
    """What is missing from a diffusers pipeline folder ([] when complete)."""
    index = path / "model_index.json"
    if not index.is_file():
        return ["model_index.json"]
    missing = []
    for name, spec in json.loads(index.read_text()).items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        sub = path / name
        if not sub.is_dir():
            missing.append(f"{name}/")
            continue
        if name in _SKIP_COMPONENTS:
            continue
        if not any(sub.glob("*config.json")):
            missing.append(f"{name}/config.json")
        for idx in sub.glob("*.index.json"):
            shards = set(json.loads(idx.read_text()).get("weight_map", {}).values())
            missing += [f"{name}/{s}" for s in sorted(shards) if not (sub / s).is_file()]
        if not any(f.suffix in _WEIGHT_SUFFIXES for f in sub.iterdir()):
            missing.append(f"{name}/ weights")
    return missing


def locate(repo: str, engine_dir: str) -> WeightsStatus:
    """Where an engine's weights are (models/<engine_dir> first, then the HF cache), or why not."""
    cmd = download_command(repo, engine_dir)
    local = models_dir() / engine_dir
    candidates = [local] + _hf_cache_snapshots(repo)
    problems = []
    for cand in candidates:
        if not cand.exists():
            continue
        missing = check_folder(cand)
        if not missing:
            return WeightsStatus(True, f"present: {cand}", path=str(cand), command=cmd)
        problems.append(f"{cand} is incomplete (missing {', '.join(missing[:5])})")
    detail = "; ".join(problems) or f"missing: no weights in {local} or the HF cache"
    return WeightsStatus(False, f"{detail}; get them with: {cmd}", command=cmd)


def require(repo: str, engine_dir: str) -> Path:
    """The weights folder, or WeightsError whose text holds the exact download command."""
    st = locate(repo, engine_dir)
    if not st.present:
        raise WeightsError(f"weights for {engine_dir} ({repo}): {st.detail}")
    return Path(st.path)  # type: ignore[arg-type]


def folder_hashes(path: Path, limit_bytes: int = 64 << 20) -> dict[str, str]:
    """sha256 of each config and weight file under a pipeline folder (large files: size+head+tail).

    Full hashes of multi-GB files would take minutes, so files above `limit_bytes` are keyed by
    their size and first/last 16 MiB, marked with a 'quick:' prefix.
    """
    out: dict[str, str] = {}
    for f in sorted(path.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        size = f.stat().st_size
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            if size <= limit_bytes:
                h.update(fh.read())
                out[str(f.relative_to(path))] = h.hexdigest()
            else:
                h.update(str(size).encode())
                h.update(fh.read(16 << 20))
                fh.seek(size - (16 << 20))
                h.update(fh.read())
                out[str(f.relative_to(path))] = "quick:" + h.hexdigest()
    return out


def file_hash(f: Path, limit_bytes: int = 64 << 20) -> str:
    """sha256 of one weight file ('quick:' size+head+tail above `limit_bytes`, as `folder_hashes`)."""
    size = f.stat().st_size
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        if size <= limit_bytes:
            h.update(fh.read())
            return h.hexdigest()
        h.update(str(size).encode())
        h.update(fh.read(16 << 20))
        fh.seek(size - (16 << 20))
        h.update(fh.read())
    return "quick:" + h.hexdigest()


def pick_dtype(device: str, prefer: str = "fp16") -> Any:
    """fp16 (or bf16 when preferred) on CUDA, fp32 on CPU."""
    import torch
    if not str(device).startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if prefer == "bf16" else torch.float16


def place(pipe: Any, device: str, memory_mode: str = "full", vae_slicing: bool = False,
          vae_tiling: bool = False) -> Any:
    """Put a pipeline on `device` in a memory mode; VAE slicing/tiling where the VAE has them."""
    if memory_mode not in MEMORY_MODES:
        raise ValueError(f"memory_mode={memory_mode!r} is not one of {', '.join(MEMORY_MODES)}")
    if memory_mode == "full" or not str(device).startswith("cuda"):
        pipe.to(device)
    elif memory_mode == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    return place_vae(pipe, vae_slicing, vae_tiling)


def place_vae(pipe: Any, vae_slicing: bool = False, vae_tiling: bool = False) -> Any:
    """VAE slicing/tiling where the pipeline's VAE has them."""
    vae = getattr(pipe, "vae", None)
    if vae_slicing and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if vae_tiling and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    return pipe


# ---- output-preserving speed-ups ---------------------------------------------------------------

class PaddedSDPAProcessor:
    """SDPA attention that zero-pads small head dims to a multiple of 8 so the flash kernel runs.

    Padding q/k with zeros leaves every dot product unchanged and padded v columns are dropped,
    so the result is the same attention (the scale is that of the real head dim).  I2VGen-XL's
    UNet has head dims 5/10/20, which otherwise fall back to slower kernels.
    """

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, *args: Any, **kwargs: Any) -> Any:
        import torch.nn.functional as F
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        ndim = hidden_states.ndim
        if ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq, _ = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        hd = key.shape[-1] // attn.heads
        q = query.view(batch, -1, attn.heads, hd).transpose(1, 2)
        k = key.view(batch, -1, attn.heads, hd).transpose(1, 2)
        v = value.view(batch, -1, attn.heads, hd).transpose(1, 2)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        pad = (-hd) % 8
        if pad:
            q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0,
                                             is_causal=False, scale=hd ** -0.5)
        if pad:
            out = out[..., :hd]
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * hd).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def pad_small_heads(model: Any) -> int:
    """Use `PaddedSDPAProcessor` on attention modules whose head dim is not a multiple of 8."""
    n = 0
    for mod in model.modules():
        if hasattr(mod, "set_processor") and hasattr(mod, "to_k") and hasattr(mod, "heads"):
            hd = mod.to_k.out_features // mod.heads
            if hd % 8 and type(mod.processor).__name__ == "AttnProcessor2_0":
                mod.set_processor(PaddedSDPAProcessor())
                n += 1
    return n


COMPILE_BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D", "TemporalConvLayer",
                  "TemporalBasicTransformerBlock", "SpatioTemporalResBlock",
                  "LTXVideoTransformerBlock", "WanTransformerBlock")


def compile_cache_dir() -> Path:
    """The persistent compile cache: models/.cache/inductor."""
    return models_dir() / ".cache" / "inductor"


def _channels_last_convs(module: Any) -> int:
    """Put every 2-D conv of `module` in channels_last; returns how many."""
    import torch
    n = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.to(memory_format=torch.channels_last)
            n += 1
    return n


def optimize(pipe: Any, *, denoiser: str = "unet", pad_heads: bool = True, channels_last: bool = True,
             compile: bool = False, compile_mode: str | None = None, scope: str = "blocks",
             denoiser_channels_last: bool = False) -> dict[str, Any]:
    """Apply output-preserving speed-ups in place; returns what was done (for the manifest).

    `scope` is "blocks" (regional compilation of the repeated blocks: fast to compile) or
    "full" (the whole denoiser as one graph).
    """
    done: dict[str, Any] = {}
    model = getattr(pipe, denoiser)
    if pad_heads:
        done["padded_attention"] = pad_small_heads(model)
    vae = getattr(pipe, "vae", None)
    if channels_last and vae is not None:
        # per 2-D conv: SVD's temporal decoder (and LTX/Wan VAEs) hold 5-D Conv3d weights, which
        # `vae.to(memory_format=channels_last)` rejects ("required rank 4 tensor")
        done["channels_last_vae"] = _channels_last_convs(vae)
    if denoiser_channels_last:
        done["channels_last_denoiser"] = _channels_last_convs(model)
    if compile and scope == "full":
        _compile_env()
        model.compile(mode=compile_mode, fullgraph=False, dynamic=False)
        done["compiled"] = "full"
    elif compile:
        _compile_env()
        n = 0
        for sub in model.modules():
            if type(sub).__name__ in COMPILE_BLOCKS:
                sub.compile(mode=compile_mode, fullgraph=False, dynamic=False)
                n += 1
        done["compiled_blocks"] = n
    if compile:
        done["compile_cache"] = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        done["compile_mode"] = compile_mode or "default"
    return done


def persistent_compile_cache() -> Path:
    """Point inductor's FX-graph and AOT caches at the persistent folder; returns it."""
    _compile_env()
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def _compile_env() -> None:
    """Persistent inductor caches under models/.cache (or $STUDIO_COMPILE_CACHE)."""
    import torch
    cache = Path(os.environ.get("STUDIO_COMPILE_CACHE") or compile_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)


# ---- one loaded pipeline ------------------------------------------------------------------------

@dataclass
class Loaded:
    """The pipeline in memory and how it was loaded."""

    key: tuple
    pipe: Any
    path: Path | None
    info: dict[str, Any]


class ModelManager:
    """Keeps at most one pipeline loaded; switching evicts the old one first."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.loaded: Loaded | None = None
        self._hashes: dict[str, dict[str, str]] = {}

    def get(self, key: tuple, load: Callable[[], tuple[Any, Path | None, dict[str, Any]]]) -> Loaded:
        """The loaded pipeline for `key`, loading it with `load()` after evicting any other."""
        with self.lock:
            if self.loaded is not None and self.loaded.key == key:
                return self.loaded
            self.evict()
            pipe, path, info = load()
            self.loaded = Loaded(key, pipe, path, info)
            log.info("loaded pipeline %s", key)
            return self.loaded

    def evict(self) -> None:
        """Drop the loaded pipeline and free its memory."""
        with self.lock:
            if self.loaded is None:
                return
            log.info("evicting pipeline %s", self.loaded.key)
            self.loaded = None
            gc.collect()
            try:
                import torch
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:  # pragma: no cover
                pass

    def hashes(self, path: Path) -> dict[str, str]:
        """Cached `folder_hashes` of a weights folder."""
        key = str(path)
        if key not in self._hashes:
            self._hashes[key] = folder_hashes(path)
        return self._hashes[key]


MANAGER = ModelManager()


def load_pipeline(cls: Any, path: Path, device: str, dtype: Any, **kw: Any) -> Any:
    """`cls.from_pretrained(path)` offline, in `dtype`; `kw` passes extra components/options."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return cls.from_pretrained(str(path), dtype=dtype, local_files_only=True, **kw)
    except (OSError, ValueError) as e:
        raise WeightsError(f"could not load {cls.__name__} from {path}: {e}") from e
