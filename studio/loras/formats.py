"""LoRA files as people publish them: read keys and shapes (no weights), name the layout and the
family they were trained for, match them to a denoiser's modules, convert to diffusers/peft keys.

Layouts understood (all end up as `<prefix>.<module>.lora_A.weight` / `lora_B.weight`, with
`lora_B.bias` for bias diffs and `lora_magnitude_vector` for DoRA):

- diffusers/peft: `transformer.<module>.lora_A/lora_B.weight` (also `base_model.model.`, no prefix,
  `.lora.down/up.weight`);
- ComfyUI/original: `diffusion_model.<module>.lora_down/lora_up.weight` or `lora_A/lora_B`, with
  `.alpha`, `.diff` (a full weight difference), `.diff_b` (a bias difference); Wan's original
  module names (`blocks.0.self_attn.q`, `ffn.0`, `head.head`, ...) are mapped to diffusers' names;
- kohya/musubi: `lora_unet_<module_with_underscores>.lora_down/lora_up.weight` + `.alpha`
  (also `lora_unet__...` and `lora_transformer_...`), any subset of the modules;
- DoRA (`.dora_scale` on the output axis, any layout above) is applied as peft's DoRA.

LyCORIS LoHa/LoKr, text-encoder keys, UNet keys on a transformer and input-axis DoRA are refused
with the reason, never dropped in silence.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .library import LoraError, check_safetensors

LAYOUT_LABELS = {"diffusers": "diffusers/peft", "comfyui": "ComfyUI/original", "kohya": "kohya/musubi"}
_PARTS = ((".lora_magnitude_vector.weight", "dora"), (".lora_magnitude_vector", "dora"),
          (".dora_scale", "dora"), (".lora_A.weight", "down"), (".lora_B.weight", "up"),
          (".lora_B.bias", "diff_b"), (".lora_down.weight", "down"), (".lora_up.weight", "up"),
          (".lora.down.weight", "down"), (".lora.up.weight", "up"), (".alpha", "alpha"),
          (".diff_b", "diff_b"), (".diff", "diff"))
_LYCORIS = re.compile(r"\.(hada_|lokr_|lora_mid\.|glora_|oft_|boft_)")
_TEXT = ("text_encoder", "lora_te", "te.", "te1.", "te2.", "text_model.")
_UNET_WORDS = ("down_blocks", "up_blocks", "mid_block", "input_blocks", "output_blocks", "middle_block")
# diffusers Wan module (regex) -> Wan's original name (what ComfyUI and musubi LoRAs use)
_WAN_NATIVE = (
    (r"blocks\.(\d+)\.attn1\.to_(q|k|v)", r"blocks.\1.self_attn.\2"),
    (r"blocks\.(\d+)\.attn1\.to_out\.0", r"blocks.\1.self_attn.o"),
    (r"blocks\.(\d+)\.attn2\.to_(q|k|v)", r"blocks.\1.cross_attn.\2"),
    (r"blocks\.(\d+)\.attn2\.to_out\.0", r"blocks.\1.cross_attn.o"),
    (r"blocks\.(\d+)\.attn2\.add_(k|v)_proj", r"blocks.\1.cross_attn.\2_img"),
    (r"blocks\.(\d+)\.ffn\.net\.0\.proj", r"blocks.\1.ffn.0"),
    (r"blocks\.(\d+)\.ffn\.net\.2", r"blocks.\1.ffn.2"),
    (r"condition_embedder\.time_proj", "time_projection.1"),
    (r"condition_embedder\.text_embedder\.linear_1", "text_embedding.0"),
    (r"condition_embedder\.text_embedder\.linear_2", "text_embedding.2"),
    (r"condition_embedder\.time_embedder\.linear_1", "time_embedding.0"),
    (r"condition_embedder\.time_embedder\.linear_2", "time_embedding.2"),
    (r"condition_embedder\.image_embedder\.ff\.net\.0\.proj", "img_emb.proj.1"),
    (r"condition_embedder\.image_embedder\.ff\.net\.2", "img_emb.proj.3"),
    (r"proj_out", "head.head"),
)
_WAN_SIZES = {5120: "14b", 3072: "5b", 1536: "1.3b"}
_LTX_SIZES = {2048: "ltx-video", 4096: "ltx-video-13b"}
COMPATIBLE = {"wan2.1-i2v-14b": {"wan2.1-t2v-14b"}}  # engine family -> other families it takes
"""A T2V 14B LoRA loads on Wan 2.1 I2V (diffusers adds zero image-attention adapters)."""


def read_shapes(path: Path | str) -> dict[str, tuple[int, ...]]:
    """Every key of a safetensors file with its shape, from the header only (no weights read).
    A file that is not safetensors, or whose header is damaged, is a `LoraError` in plain words."""
    from safetensors import safe_open
    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - the library's words ("Error while deserializing header...")
        raise LoraError(f"not a safetensors file: {Path(path).name} has a damaged header or is cut "
                        f"short ({type(e).__name__})") from e


def flat(name: str) -> str:
    """A module name as kohya writes it (dots to underscores)."""
    return name.replace(".", "_")


def split_key(key: str) -> tuple[str, str | None, str | None]:
    """(layout, module name as written, part) of one key; layout 'text'/'unet'/'lycoris'/'unknown'
    for keys this loader does not take (module None)."""
    if _LYCORIS.search(key):
        return "lycoris", None, None
    part = base = None
    for suf, which in _PARTS:
        if key.endswith(suf):
            base, part = key[: -len(suf)], which
            break
    if base is None:
        return "unknown", None, None
    if base.startswith(("lora_unet_", "lora_transformer_")):
        rest = base.split("_", 2)[2].lstrip("_")
        return "kohya", rest.removeprefix("diffusion_model_"), part
    if base.startswith(_TEXT):
        return "text", None, part
    if base.startswith("unet."):
        return "unet", None, part
    for p in ("model.diffusion_model.", "diffusion_model."):
        if base.startswith(p):
            return "comfyui", base[len(p):], part
    for p in ("base_model.model.transformer.", "base_model.model.", "transformer."):
        if base.startswith(p):
            return "diffusers", base[len(p):], part
    return "diffusers", base, part


def guess_family(shapes: dict[str, tuple[int, ...]]) -> tuple[str | None, str]:
    """The family a LoRA was trained for, from its module names and shapes: (family, why)."""
    names = " ".join(shapes)
    if any(w in names for w in _UNET_WORDS) or any(k.startswith("unet.") for k in shapes):
        return "unet", "a UNet (SD-style: down_blocks/up_blocks), as I2VGen-XL, SVD and image models have"
    dims: list[int] = []
    for k, s in shapes.items():
        lay, mod, part = split_key(k)
        if mod and part == "down" and len(s) >= 2 and re.search(r"(attn1?[._]to_q|self_attn[._]q)$", mod):
            dims.append(int(s[1]))
    d = max(set(dims), key=dims.count) if dims else None
    mods = [m for m in (split_key(k)[1] for k in shapes) if m]
    wan = re.search(r"(self_attn|cross_attn)", names) or any(re.match(r"blocks[._]\d+[._]attn[12]", m)
                                                              for m in mods)
    if wan:
        size = _WAN_SIZES.get(d or -1)
        img = bool(re.search(r"(k_img|v_img|add_k_proj|add_v_proj)", names))
        if size == "14b":
            return (("wan2.1-i2v-14b", "Wan 14B with image cross-attention (Wan 2.1 I2V)") if img else
                    ("wan2.1-t2v-14b", "Wan 14B without image-attention keys (Wan 2.1 T2V, a Wan 2.2 "
                     "A14B expert, or an I2V LoRA that leaves those layers out)"))
        if size == "5b":
            return "wan2.2-ti2v-5b", "Wan 2.2 TI2V 5B (hidden size 3072)"
        if size == "1.3b":
            return "wan2.1-t2v-1.3b", "Wan 2.1 T2V 1.3B (hidden size 1536)"
        return f"wan (hidden {d})", f"a Wan transformer of hidden size {d}, not a published Wan size"
    if any(m.startswith("transformer_blocks") for m in mods):
        fam = _LTX_SIZES.get(d or -1)
        if fam:
            return fam, f"an LTX-Video transformer of hidden size {d}"
        return f"dit (hidden {d})", f"a transformer with transformer_blocks of hidden size {d}"
    return None, "no known module names"


def family_fits(lora_family: str | None, engine_family: str) -> bool:
    """Whether a LoRA of `lora_family` is meant for an engine of `engine_family`."""
    return lora_family == engine_family or lora_family in COMPATIBLE.get(engine_family, set())


def native_names(module: str, kind: str) -> list[str]:
    """Other names of a diffusers module in published LoRAs (Wan's original names)."""
    if kind != "wan":
        return []
    out = []
    for pat, rep in _WAN_NATIVE:
        if re.fullmatch(pat, module):
            out.append(re.sub(pat, rep, module))
    return out


@dataclass
class Scan:
    """What the keys of a LoRA say about one engine's denoiser."""

    layout: str
    family: str | None
    family_why: str
    total: int
    modules: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> {part: file key}
    matched_keys: int = 0
    unmatched: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    norm_diffs: list[str] = field(default_factory=list)  # allowed only when all zero (checked at load)
    dora: bool = False
    targets: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    @property
    def layout_label(self) -> str:
        """The layout's name for messages."""
        return LAYOUT_LABELS.get(self.layout, self.layout)


def _layout(kinds: list[str]) -> str:
    known = [k for k in kinds if k in LAYOUT_LABELS]
    if not known:
        return {"lycoris": "LyCORIS (LoHa/LoKr)", "text": "text encoder only",
                "unet": "diffusers/peft (unet)"}.get(max(set(kinds), key=kinds.count) if kinds else "",
                                                      "unknown")
    return max(set(known), key=known.count)


def scan(shapes: dict[str, tuple[int, ...]], targets: dict[str, tuple[int, ...]], kind: str) -> Scan:
    """Match a LoRA's keys (names and shapes only) to `targets` ({module: weight shape}).

    `kind` is "wan" (original Wan names are understood too) or anything else.
    """
    split = {k: split_key(k) for k in shapes}
    fam, why = guess_family(shapes)
    kinds = [s[0] for s in split.values() if s[2] != "alpha"]
    if any(s[0] == "unet" for s in split.values()):
        kinds = kinds + ["unet"]
    out = Scan(layout=_layout(kinds), family=fam, family_why=why, total=len(shapes), targets=dict(targets))
    lookup: dict[str, str] = {}
    for mod in targets:
        lookup[flat(mod)] = mod
        for alias in native_names(mod, kind):
            lookup[flat(alias)] = mod
    foreign = {"lycoris": "LyCORIS LoHa/LoKr keys are not supported",
               "text": "text-encoder keys (this engine loads LoRAs into its denoiser only)",
               "unet": "its keys target a UNet (`unet.`), this engine's denoiser is a transformer",
               "unknown": "keys of no LoRA layout"}
    why_not: dict[str, int] = {}
    for key, (lay, name, part) in split.items():
        mod = lookup.get(flat(name)) if name is not None else None
        if mod is None:
            if name is not None and part in ("diff", "diff_b") and "norm" in name:
                out.norm_diffs.append(key)
                continue
            out.unmatched.append(key)
            reason = foreign.get(lay, "modules this engine does not have")
            why_not[reason] = why_not.get(reason, 0) + 1
            continue
        out.modules.setdefault(mod, {})[part] = key  # type: ignore[index]
    for mod, parts in list(out.modules.items()):
        bad = _check_module(mod, parts, shapes, targets[mod])
        if bad:
            out.problems.append(bad)
            del out.modules[mod]
            continue
        out.dora = out.dora or "dora" in parts
        out.matched_keys += len(parts)
    for reason, n in sorted(why_not.items(), key=lambda x: -x[1]):
        out.problems.append(f"{n} key(s): {reason}")
    return out


def _check_module(mod: str, parts: dict[str, str], shapes: dict[str, tuple[int, ...]],
                  target: tuple[int, ...]) -> str | None:
    """Why `parts` cannot be applied to a module of weight shape `target` (None when they can)."""
    s = {p: tuple(shapes[k]) for p, k in parts.items()}
    out_f = target[0]
    if ("down" in s) != ("up" in s):
        return f"{mod}: {'lora_up' if 'down' in s else 'lora_down'} is missing (an incomplete pair)"
    if "down" not in s and "diff" not in s and "diff_b" not in s:
        return f"{mod}: only {', '.join(sorted(s))} (no weights)"
    if "down" in s:
        d, u = s["down"], s["up"]
        if len(d) != len(target) or d[1:] != target[1:] or u[0] != out_f or u[1] != d[0] \
                or any(x != 1 for x in u[2:]):
            return (f"{mod}: lora_down {list(d)} / lora_up {list(u)} do not fit the layer's "
                    f"weight {list(target)}")
    if "diff" in s and s["diff"] != target:
        return f"{mod}: diff {list(s['diff'])} does not fit the layer's weight {list(target)}"
    if "diff_b" in s and s["diff_b"] != (out_f,):
        return f"{mod}: diff_b {list(s['diff_b'])} does not fit the layer's bias [{out_f}]"
    if "dora" in s:
        ds = s["dora"]
        if len(target) != 2:
            return f"{mod}: DoRA on a convolution is not supported"
        if ds not in ((out_f,), (out_f, 1)):
            axis = "the input" if ds == (1, target[1]) else "an unknown"
            return (f"{mod}: dora_scale {list(ds)} is on {axis} axis; only output-axis DoRA "
                    f"([{out_f}, 1]) can be applied")
        if "down" not in s:
            return f"{mod}: dora_scale without lora_down/lora_up"
    return None


def to_peft(scan_: Scan, get: Any, prefix: str = "transformer") -> dict[str, Any]:
    """diffusers/peft tensors for the matched modules; `get(key)` reads one tensor from the file.

    alpha/rank is folded into lora_A; `.diff` becomes extra rank (lora_A = diff, lora_B = I), which
    is exact; `.diff_b` becomes lora_B.bias; output-axis `dora_scale` becomes lora_magnitude_vector.
    `prefix` is the pipeline attribute (a hook for pipelines with two experts: 'transformer_2').
    """
    import torch
    out: dict[str, Any] = {}
    for mod, parts in scan_.modules.items():
        a = b = None
        if "down" in parts:
            a, b = get(parts["down"]).float(), get(parts["up"]).float()
            if "alpha" in parts:
                a = a * (float(get(parts["alpha"])) / a.shape[0])
        if "diff" in parts:
            diff = get(parts["diff"]).float()
            n = diff.shape[0]
            eye = torch.eye(n).reshape(n, n, *([1] * (diff.dim() - 2)))
            a = diff if a is None else torch.cat([a, diff], 0)
            b = eye if b is None else torch.cat([b, eye], 1)
        if a is None:  # a bias difference alone: a zero rank-1 pair carries it
            bias = get(parts["diff_b"])
            a_shape = (1, *scan_.targets[mod][1:])
            a, b = torch.zeros(a_shape), torch.zeros(bias.shape[0], 1, *([1] * (len(a_shape) - 2)))
        out[f"{prefix}.{mod}.lora_A.weight"] = a.contiguous()
        out[f"{prefix}.{mod}.lora_B.weight"] = b.contiguous()
        if "diff_b" in parts:
            out[f"{prefix}.{mod}.lora_B.bias"] = get(parts["diff_b"]).float().contiguous()
        if "dora" in parts:
            out[f"{prefix}.{mod}.lora_magnitude_vector"] = get(parts["dora"]).float().reshape(-1)
    if any(k.endswith(".lora_B.bias") for k in out):  # peft gives every lora_B a bias then: zero ones
        for k in [k for k in out if k.endswith(".lora_B.weight")]:
            out.setdefault(k.removesuffix(".weight") + ".bias", torch.zeros(out[k].shape[0]))
    return out


def module_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Weight shapes of a denoiser's Linear/Conv layers by name (peft/our wrappers unwrapped)."""
    import torch.nn as nn
    out: dict[str, tuple[int, ...]] = {}
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        if ".lora_" in name or name.endswith(".base"):
            if name.endswith(".base"):
                out[name.removesuffix(".base")] = tuple(m.weight.shape)
            continue
        out[name.removesuffix(".base_layer")] = tuple(m.weight.shape)
    return out


@lru_cache(maxsize=8)
def _shapes_from_config_text(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    import diffusers
    import torch
    cfg = json.loads(text)
    cls = getattr(diffusers, str(cfg.get("_class_name")), None)
    if cls is None:
        raise ValueError(f"config names no diffusers model class (_class_name={cfg.get('_class_name')!r})")
    with torch.device("meta"):
        model = cls.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    return tuple(module_shapes(model).items())


def shapes_from_config(path: Path) -> dict[str, tuple[int, ...]]:
    """Module shapes of the denoiser a diffusers config.json describes (built on the meta device)."""
    return dict(_shapes_from_config_text(Path(path).read_text()))
