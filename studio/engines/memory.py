"""VRAM profiles for the diffusion engines, an estimate of each one's peak, and `auto`.

Profiles, fastest first (the order `auto` tries them in):
- `full`: every component on the GPU.
- `fp8_layerwise`: denoiser weights stored in fp8 (e4m3fn) on the GPU, each layer upcast to bf16 for
  its forward (diffusers' layerwise casting). Changes the output (fp8 rounding of the weights).
- `model_offload`: one component on the GPU at a time (diffusers `enable_model_cpu_offload`).
- `group_leaf`: every leaf module streams from pinned CPU memory one step ahead on a side CUDA stream
  (diffusers `apply_group_offloading`, leaf level), for all components.
- `group_block`: the denoiser's blocks stream the same way a block at a time (other components leaf
  by leaf).  Measured on an H200 (bench/results/wan_memory_h200.json, Wan 2.1 14B, 832×480×81):
  leaf 6.73 s/step at 3.5 GB, block 7.2–7.3 s at 5.5 GB, full 6.40 s at 34.1 GB, so leaf comes
  first: it is both faster and smaller there; block stays as an explicit choice.
- `sequential`: every module moved in on use (`enable_sequential_cpu_offload`), the last resort
  (stock: 16.2–17.1 s/step in the same run).
VAE tiling is a flag on top of any profile (`vae_tiling`); `auto` turns it on when the VAE decode
would not fit otherwise.

The peak estimate is parameter bytes (what the profile keeps resident) plus activations from the
request's size: denoiser tokens × (hidden + FFN width) for the transformer's largest layer, and
the VAE decode's working set at the output size.  Estimates are in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROFILES = ("full", "fp8_layerwise", "model_offload", "group_leaf", "group_block", "sequential")
FALLBACK = {"full": "model_offload", "fp8_layerwise": "group_leaf", "model_offload": "group_leaf",
            "group_block": "group_leaf", "group_leaf": "sequential", "sequential": None}
"""On out-of-memory, the profile tried next (one that needs less)."""
OUTPUT_CHANGING = {"fp8_layerwise": "denoiser weights rounded to fp8 e4m3fn"}
MODES = ("auto",) + PROFILES
LEGACY = {"sequential_offload": "sequential"}
MARGIN = 1.10  # allocator fragmentation and workspace
GIB = 1 << 30


@dataclass(frozen=True)
class Sizes:
    """What the estimate needs: parameter bytes per component and the request's activation size."""

    params: dict[str, int]        # component -> bytes in the compute dtype
    denoisers: tuple[str, ...]    # e.g. ("transformer",) or ("transformer", "transformer_2")
    blocks: int                   # repeated blocks in one denoiser (for block-level streaming)
    tokens: int                   # denoiser sequence length (latent frames × latent pixels / patch)
    hidden: int                   # denoiser width
    ffn: int                      # feed-forward width
    batch: int                    # denoiser batch per call (1: CFG runs cond/uncond separately)
    vae_pixels: int               # output width × height (VAE decode works frame-chunk by chunk)
    dtype_bytes: int = 2
    largest_leaf: int = 0         # bytes of the largest single module outside the denoisers


def activation_bytes(s: Sizes) -> int:
    """The denoiser's working set for one call: a few residual-stream copies, the FFN's inner
    activation and attention's q/k/v/out (SDPA keeps no score matrix)."""
    per_token = 6 * s.hidden + 2 * s.ffn
    return s.batch * s.tokens * per_token * s.dtype_bytes


def vae_bytes(s: Sizes, tiling: bool) -> int:
    """The VAE decode's working set: ~4 frames × 256 channels at full size (a quarter tiled)."""
    b = s.vae_pixels * 4 * 256 * s.dtype_bytes
    return b // 4 if tiling else b


def estimate(profile: str, s: Sizes, tiling: bool = False) -> int:
    """Estimated peak bytes of `profile` for these sizes."""
    den = sum(s.params.get(d, 0) for d in s.denoisers)
    one_den = max((s.params.get(d, 0) for d in s.denoisers), default=0)
    others = {k: v for k, v in s.params.items() if k not in s.denoisers}
    biggest_other = max(others.values(), default=0)
    act = activation_bytes(s)
    vae = vae_bytes(s, tiling) + s.params.get("vae", 0)
    block = one_den / max(1, s.blocks)
    if profile == "full":
        resident = den + sum(others.values())
        return int(MARGIN * (resident + max(act, vae_bytes(s, tiling))))
    if profile == "fp8_layerwise":
        resident = den / 2 + sum(others.values())
        return int(MARGIN * (resident + max(act, vae_bytes(s, tiling))))
    if profile == "model_offload":
        return int(MARGIN * max(one_den + act, biggest_other, vae))
    # streaming profiles: the encoders and the VAE stream leaf by leaf (two leaves resident)
    leaves = 2 * s.largest_leaf + vae_bytes(s, tiling)
    if profile == "group_block":
        # two blocks resident (the one running and the one prefetched) + non-block layers
        return int(MARGIN * max(2 * block + 0.03 * one_den + act, leaves))
    if profile == "group_leaf":
        return int(MARGIN * max(0.03 * one_den + act, leaves))
    if profile == "sequential":
        return int(MARGIN * max(act, vae_bytes(s, tiling)) + 0.02 * one_den)
    raise ValueError(f"memory profile {profile!r} is not one of {', '.join(PROFILES)}")


@dataclass(frozen=True)
class Choice:
    """The profile picked, its estimated peak and the budget it was picked for."""

    profile: str
    peak_bytes: int
    budget_bytes: int | None
    vae_tiling: bool
    estimates: dict[str, int]

    def describe(self) -> str:
        """'group_block, est. peak 9.8 GB of 12.0 GB free' for the ledger and the manifest."""
        budget = "" if self.budget_bytes is None else f" of {self.budget_bytes / GIB:.1f} GiB"
        tile = ", VAE tiled" if self.vae_tiling else ""
        return f"{self.profile}, est. peak {self.peak_bytes / GIB:.1f} GiB{budget}{tile}"


def choose(mode: str, s: Sizes, budget_bytes: int | None, allow_output_changing: bool = False,
           vae_tiling: bool = False) -> Choice:
    """The profile for `mode`: itself, or with `auto` the fastest that fits `budget_bytes`.

    `auto` skips output-changing profiles unless allowed; when nothing fits, the one with the
    smallest estimate (sequential) is chosen and its estimate says so.
    """
    mode = LEGACY.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"memory_mode={mode!r} is not one of {', '.join(MODES)}")
    ests = {p: estimate(p, s, vae_tiling) for p in PROFILES}
    if mode != "auto":
        return Choice(mode, ests[mode], budget_bytes, vae_tiling, ests)
    if budget_bytes is None:
        return Choice("full", ests["full"], None, vae_tiling, ests)
    for p in PROFILES:  # a faster profile with VAE tiling beats a slower one without
        if p in OUTPUT_CHANGING and not allow_output_changing:
            continue
        for tiling in ((True,) if vae_tiling else (False, True)):
            est = estimate(p, s, tiling)
            if est <= budget_bytes:
                return Choice(p, est, budget_bytes, tiling, {q: estimate(q, s, tiling) for q in PROFILES})
    return Choice("sequential", ests["sequential"], budget_bytes, True, ests)


def next_profile(profile: str, allow_output_changing: bool = False) -> str | None:
    """The OOM fallback after `profile` (a profile that needs less memory), or None after the last."""
    if profile == "full" and allow_output_changing:
        return "fp8_layerwise"
    return FALLBACK[profile]


def free_vram(device: str) -> int | None:
    """Bytes this process may still allocate on `device`: free memory, under any per-process cap."""
    if not str(device).startswith("cuda"):
        return None
    import torch
    dev = torch.device(device)
    free, total = torch.cuda.mem_get_info(dev)
    get_frac = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    frac = get_frac(dev) if get_frac is not None else 1.0
    cap = int(frac * total) - torch.cuda.memory_reserved(dev)
    return int(min(free, cap))


def apply(pipe: Any, profile: str, device: str, denoisers: tuple[str, ...]) -> None:
    """Place `pipe` on `device` under `profile` (CPU: everything stays on the CPU)."""
    import torch
    if profile not in PROFILES:
        raise ValueError(f"memory profile {profile!r} is not one of {', '.join(PROFILES)}")
    if not str(device).startswith("cuda"):
        pipe.to(device)
        return
    dev = torch.device(device)
    mods = [getattr(pipe, d) for d in denoisers if getattr(pipe, d, None) is not None]
    if profile == "full":
        pipe.to(device)
    elif profile == "fp8_layerwise":
        for m in mods:
            m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=m.dtype)
        pipe.to(device)
    elif profile == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif profile in ("group_block", "group_leaf"):
        from diffusers.hooks import apply_group_offloading
        kw: dict[str, Any] = dict(onload_device=dev, offload_device=torch.device("cpu"), use_stream=True)
        for name, comp in pipe.components.items():
            if not isinstance(comp, torch.nn.Module):
                continue
            if profile == "group_block" and name in denoisers:
                apply_group_offloading(comp, offload_type="block_level", num_blocks_per_group=1, **kw)
            else:  # text/image encoders and the VAE stream leaf by leaf (a small working set)
                apply_group_offloading(comp, offload_type="leaf_level", **kw)
    else:
        pipe.enable_sequential_cpu_offload(device=device)


def sizes_for(pipe: Any, denoisers: tuple[str, ...], frames: int, width: int, height: int,
              cfg: bool) -> Sizes:
    """`Sizes` from a loaded (or empty-weight) pipeline and a request's shape."""
    params, leaf = {}, 0
    for name, comp in getattr(pipe, "components", {}).items():
        if hasattr(comp, "parameters"):
            params[name] = sum(p.numel() * p.element_size() for p in comp.parameters())
            if name not in denoisers:
                leaf = max([leaf] + [sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
                                     for m in comp.modules()])
    den = next(getattr(pipe, d) for d in denoisers if getattr(pipe, d, None) is not None)
    return sizes_from_config(dict(den.config), params, denoisers, frames, width, height, cfg,
                             spatial=int(getattr(pipe, "vae_scale_factor_spatial", 8)),
                             temporal=int(getattr(pipe, "vae_scale_factor_temporal", 4)), largest_leaf=leaf)


def sizes_from_config(cfg: dict[str, Any], params: dict[str, int], denoisers: tuple[str, ...], frames: int,
                      width: int, height: int, cfg_guidance: bool, spatial: int = 8,
                      temporal: int = 4, batched_cfg: bool = False, largest_leaf: int = 0) -> Sizes:
    """`Sizes` from a denoiser config (Wan/LTX keys) and parameter bytes."""
    patch = cfg.get("patch_size", (1, 2, 2))
    pt, ph, pw = (patch if isinstance(patch, (list, tuple)) else (cfg.get("patch_size_t", 1), patch, patch))
    lat_t = (frames - 1) // temporal + 1
    tokens = (lat_t // pt) * (height // spatial // ph) * (width // spatial // pw)
    hidden = int(cfg.get("num_attention_heads", 1)) * int(cfg.get("attention_head_dim", 64))
    ffn = int(cfg.get("ffn_dim") or 4 * hidden)
    return Sizes(params, denoisers, int(cfg.get("num_layers", 1)), tokens, hidden, ffn,
                 2 if (cfg_guidance and batched_cfg) else 1, width * height, largest_leaf=largest_leaf)
