"""Find an engine's weights as people have them and build its pipeline from them, offline.

Per component of the engine's `model_index.json` (shipped in `studio/configs/<engine>/`, never
fetched), in this order:
1. a complete diffusers folder `models/<engine>/` or a snapshot in the local HF cache (as before);
2. a diffusers component folder `models/<engine>/<component>/` (config + weights);
3. a single file under `models/<engine>/` or `$STUDIO_COMFYUI_DIR` (`diffusion_models/`, `unet/`,
   `text_encoders/`, `clip/`, `clip_vision/`, `vae/`): ComfyUI/original or diffusers key layout,
   bf16/fp16/fp32, fp8 (e4m3fn, "scaled" too; kept in fp8) or GGUF (transformers, via diffusers'
   GGUF support).  A file is taken only when its converted keys and shapes equal the component's.
Tokenizers come from `models/<engine>/tokenizer/` or the HF cache; schedulers and image
processors from the shipped configs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..weights import WeightsError, models_dir
from . import weightfiles as wf


class DiffusionEngine(Protocol):
    """What loading needs of an engine (`studio.engines.diffusion.DiffusionEngine` has it); a protocol,
    so that loading does not import the engine module that imports it."""

    id: str
    repo: str
    engine_dir: str
    pipeline_class: str

    def load_kwargs(self) -> dict[str, Any]: ...

CONFIGS_ROOT = Path(__file__).resolve().parent.parent / "configs"
# ComfyUI keeps whole LTX checkpoints (transformer + VAE in one file) in checkpoints/
COMFY_DIRS = {"transformer": ("diffusion_models", "unet", "checkpoints"),
              "transformer_2": ("diffusion_models", "unet"),
              "text_encoder": ("text_encoders", "clip"), "image_encoder": ("clip_vision",),
              "vae": ("vae", "checkpoints"),
              # LTX-2: a whole checkpoint also fills the audio VAE, the vocoder and the text connectors
              "audio_vae": ("vae", "checkpoints"), "vocoder": ("vae", "checkpoints"),
              "connectors": ("text_encoders", "checkpoints")}

CONFIG_ONLY = {"scheduler", "image_processor", "feature_extractor", "guider"}
_RANK = {"fp32": 0, "bf16": 0, "fp16": 0}


def configs_dir(engine_id: str) -> Path:
    """The shipped configs of an engine ($STUDIO_CONFIGS_DIR/<engine> when set, for tests)."""
    return Path(os.environ.get("STUDIO_CONFIGS_DIR") or CONFIGS_ROOT) / engine_id


def comfy_dir() -> Path | None:
    """An existing ComfyUI models folder ($STUDIO_COMFYUI_DIR), if set."""
    v = os.environ.get("STUDIO_COMFYUI_DIR")
    return Path(v) if v else None


@dataclass
class Part:
    """Where one component comes from (or that it is missing)."""

    name: str
    cls_name: str
    source: str                  # "folder", "file", "config", "tokenizer", "missing", "none"
    path: Path | None = None
    info: wf.FileInfo | None = None
    detail: str = ""

    @property
    def present(self) -> bool:
        """Found (or not needed)."""
        return self.source != "missing"

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the chosen file or folder."""
        if self.info is not None:
            return self.info.size_bytes
        if self.path is not None and self.path.is_dir() and self.source in ("folder", "tokenizer"):
            return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return 0

    @property
    def format(self) -> str:
        """'diffusers folder', 'safetensors fp8_e4m3fn scaled', 'gguf Q8_0', 'shipped config'…"""
        if self.info is not None:
            return self.info.label + (" (ComfyUI/original keys)" if "original" in self.info.kinds.values()
                                      else "")
        return {"folder": "diffusers folder", "config": "shipped config", "tokenizer": "tokenizer folder",
                "none": "not used"}.get(self.source, "missing")


@dataclass
class Inventory:
    """What was found for one engine."""

    engine_id: str
    repo: str
    folder: Path | None = None               # a complete diffusers folder, when there is one
    parts: dict[str, Part] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # files of a right kind that did not fit
    single_files: str = ""                   # an `hf download` of ComfyUI single files, if known

    @property
    def present(self) -> bool:
        """Everything needed was found."""
        return self.folder is not None or (bool(self.parts) and all(p.present for p in self.parts.values()))

    @property
    def missing(self) -> list[str]:
        """Names of missing components."""
        return [] if self.folder is not None else [n for n, p in self.parts.items() if not p.present]

    def key(self) -> tuple:
        """A hashable identity of the chosen sources (for the loaded-pipeline cache)."""
        if self.folder is not None:
            return (str(self.folder),)
        return tuple(sorted((n, p.source, str(p.path)) for n, p in self.parts.items()))

    def commands(self) -> list[str]:
        """Commands that fetch what is missing (huggingface_hub's `hf`)."""
        miss = self.missing
        if self.present:
            return []
        import shlex

        from ..hubfetch import hf_cli
        hf, dest = hf_cli(), shlex.quote(str((models_dir() / self.engine_id).resolve()))
        needed = [p for p in self.parts.values() if p.source not in ("config", "none")]
        if not self.parts or len(miss) == len(needed):
            out = [f"{shlex.quote(hf)} download {self.repo} --local-dir {dest}"]
        else:
            inc = " ".join(f'--include "{m}/*"' for m in miss)
            out = [f"{shlex.quote(hf)} download {self.repo} {inc} --local-dir {dest}"]
        if self.single_files and set(miss) - {"tokenizer"}:
            words = self.single_files.split(" ", 1)
            out.append(f"{shlex.quote(hf) if words[0] == 'hf' else words[0]} {words[1]} --local-dir {dest}")
        return out


def model_index(engine_id: str) -> dict[str, Any]:
    """The shipped model_index.json of an engine."""
    p = configs_dir(engine_id) / "model_index.json"
    if not p.is_file():
        raise WeightsError(f"no shipped configs for engine {engine_id!r} at {p.parent}")
    return json.loads(p.read_text())


def _component_classes(engine_id: str) -> dict[str, tuple[str | None, str | None]]:
    idx = model_index(engine_id)
    return {k: (v[0], v[1]) for k, v in idx.items() if not k.startswith("_") and isinstance(v, list)}


def _folder_ok(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        f.suffix in (".safetensors", ".bin") for f in path.iterdir() if f.is_file())


def expected_shapes(engine_id: str, name: str, cls_name: str) -> dict[str, tuple[int, ...]]:
    """The component's state-dict shapes, built on the meta device from the shipped config."""
    return {k: tuple(v.shape) for k, v in empty_model(engine_id, name, cls_name).state_dict().items()}


def empty_model(engine_id: str, name: str, cls_name: str) -> Any:
    """The component with parameters on the meta device (buffers real), from its config."""
    from accelerate import init_empty_weights
    cfg_dir = configs_dir(engine_id) / name
    cls = _lib_class(cls_name)
    with init_empty_weights():
        if hasattr(cls, "load_config"):  # a diffusers model (pipeline-local ones such as LTX-2's vocoder too)
            return cls.from_config(cls.load_config(str(cfg_dir)))
        return cls(cls.config_class.from_pretrained(str(cfg_dir)))


def _tokenizer_dir(engine: DiffusionEngine, name: str = "tokenizer") -> Path | None:
    from ..modelmgr import _hf_cache_snapshots
    cands = [models_dir() / engine.engine_dir / name]
    cands += [s / name for s in _hf_cache_snapshots(engine.repo)]
    repos = getattr(engine, "tokenizer_repos", ()) if name == "tokenizer" else \
        getattr(engine, "extra_tokenizer_repos", {}).get(name, ())
    for repo in repos:
        cands += _hf_cache_snapshots(repo)
    for c in cands:
        if c.is_dir() and any((c / n).is_file() for n in ("tokenizer.json", "spiece.model",
                                                           "tokenizer_config.json")):
            return c
    return None


def inventory(engine: DiffusionEngine) -> Inventory:
    """Find every component of `engine` (see the module docstring)."""
    from ..modelmgr import locate
    inv = Inventory(engine.id, engine.repo, single_files=getattr(engine, "single_files", ""))
    st = locate(engine.repo, engine.engine_dir)
    if st.present and st.path:
        inv.folder = Path(st.path)
        return inv
    try:
        classes = _component_classes(engine.id)
    except WeightsError:
        return inv
    local = models_dir() / engine.engine_dir
    roots = [local]
    comfy = comfy_dir()
    files = wf.scan(roots)
    comfy_files = []
    if comfy is not None:
        dirs = sorted({d for ds in COMFY_DIRS.values() for d in ds})
        comfy_files = wf.scan([comfy / d for d in dirs])
    taken: set[tuple[Path, str]] = set()
    for name, (lib, cls_name) in classes.items():
        if lib is None or cls_name is None:
            inv.parts[name] = Part(name, "", "none")
        elif name in CONFIG_ONLY:
            inv.parts[name] = Part(name, cls_name, "config", configs_dir(engine.id) / name)
        elif name.startswith("tokenizer"):
            d = _tokenizer_dir(engine, name)
            inv.parts[name] = (Part(name, cls_name, "tokenizer", d) if d else
                               Part(name, cls_name, "missing", detail="no tokenizer folder"))
        elif _folder_ok(local / name):
            inv.parts[name] = Part(name, cls_name, "folder", local / name)
        else:
            inv.parts[name] = _pick_file(engine.id, name, cls_name, files, comfy_files, taken, inv)
    return inv


def _pick_file(engine_id: str, name: str, cls_name: str, files: list[wf.FileInfo],
               comfy_files: list[wf.FileInfo], taken: set[tuple[Path, str]], inv: Inventory) -> Part:
    kind = wf.KIND_OF_CLASS.get(cls_name)
    pool = files + [f for f in comfy_files if f.path.parent.name in COMFY_DIRS.get(name, ())
                    or any(d in f.path.parts for d in COMFY_DIRS.get(name, ()))]
    cands = [f for f in pool if kind in f.kinds]
    if not cands:
        return Part(name, cls_name, "missing", detail=f"no {kind} file" if kind else
                    f"no folder {engine_id}/{name}/ (its single files are not read)")
    expected = expected_shapes(engine_id, name, cls_name)

    def order(f: wf.FileInfo) -> tuple:
        # the expert named for this slot first (Wan 2.2 high/low noise), full precision, fp8, GGUF
        stem = f.path.name.lower()
        want = "high" if name == "transformer" else "low" if name == "transformer_2" else ""
        return (0 if want and want in stem else 1, _RANK.get(f.precision, 1 if f.fp8 else 2), str(f.path))
    for f in sorted(cands, key=order):
        if (f.path, kind) in taken:  # one file fills one component of a kind (Wan 2.2's two experts),
            continue                   # but several kinds (a whole LTX checkpoint)
        probs = wf.fit_problems(expected, wf.converted_shapes(f, kind, cls_name), cls_name)
        if probs:
            inv.rejected.append(f"{f.path.name} does not fit {engine_id} {name}: {'; '.join(probs)}")
            continue
        taken.add((f.path, kind))
        return Part(name, cls_name, "file", f.path, f)
    return Part(name, cls_name, "missing", detail=f"no {kind} file fits")


# ---- building ------------------------------------------------------------------------------------

def load_part(engine_id: str, part: Part, dtype: Any) -> Any:
    """Load one model component from its folder or single file, in `dtype` (fp8 stays fp8)."""
    if part.source == "folder":
        return _lib_class(part.cls_name).from_pretrained(str(part.path), torch_dtype=dtype,
                                                         local_files_only=True)
    assert part.info is not None and part.path is not None
    if part.info.fmt == "gguf":
        from diffusers import GGUFQuantizationConfig
        cls = _lib_class(part.cls_name)
        return cls.from_single_file(str(part.path), config=str(configs_dir(engine_id)), subfolder=part.name,
                                    quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
                                    torch_dtype=dtype, local_files_only=True)
    return _load_safetensors(engine_id, part, dtype)


def _lib_class(cls_name: str) -> Any:
    """A component class by name: diffusers, a diffusers pipeline's own models (LTX-2's connectors,
    vocoder and latent upsampler live in `diffusers.pipelines.ltx2`), or transformers."""
    import diffusers
    import transformers
    found = getattr(diffusers, cls_name, None)
    if found is None and cls_name.startswith("LTX2"):
        from diffusers.pipelines import ltx2
        found = getattr(ltx2, cls_name, None)
    return found or getattr(transformers, cls_name)


def _load_safetensors(engine_id: str, part: Part, dtype: Any) -> Any:
    from safetensors.torch import load_file

    from . import fp8
    assert part.info is not None and part.path is not None
    kind = wf.KIND_OF_CLASS[part.cls_name]
    raw = load_file(str(part.path))
    raw.pop("spiece_model", None)
    raw = {wf._strip(k): v for k, v in raw.items()}
    scales = fp8.split_scales(raw)
    owner = {id(v): k for k, v in raw.items()}
    sd = wf.convert(raw, part.info.kinds[kind], part.cls_name)
    scales = {new: scales[owner[id(v)]] for new, v in sd.items() if owner.get(id(v)) in scales}
    model = empty_model(engine_id, part.name, part.cls_name)
    n_fp8 = fp8.install(model, sd, scales, dtype)
    del raw
    # fresh (allocator-aligned) copies: tensors at the unaligned offsets of a safetensors buffer
    # take other CPU kernel paths and give last-bit differences from a from_pretrained load
    sd = {k: sd.pop(k).to(dtype if v.is_floating_point() else v.dtype, copy=True)
          for k, v in list(sd.items())}
    res = model.load_state_dict(sd, strict=False, assign=True)
    own = ("weight", "bias", "scale_weight")
    missing = set(res.missing_keys) - {f"{n}.{s}" for n, m in model.named_modules()
                                       if isinstance(m, fp8.Fp8Linear) for s in own}
    missing -= set(wf.ALLOWED_MISSING.get(part.cls_name, ()))
    extra = set(res.unexpected_keys) - set(wf.ALLOWED_EXTRA.get(part.cls_name, ()))
    if missing or extra:
        raise WeightsError(f"{part.path} does not fit {part.name}: missing {sorted(missing)[:3]}, "
                           f"unexpected {sorted(extra)[:3]}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if meta:
        raise WeightsError(f"{part.path}: {len(meta)} weights of {part.name} were not in the file "
                           f"(e.g. {meta[0]})")
    model.eval()
    model._studio_fp8_layers = n_fp8
    return model


def build_pipeline(engine: DiffusionEngine, inv: Inventory, dtype: Any) -> Any:
    """The engine's pipeline from the parts of `inv` (on the CPU; `place` moves it)."""
    import diffusers
    if not inv.present:
        raise WeightsError(f"weights for {engine.id}: missing {', '.join(inv.missing)}; get them with: "
                           f"{' or '.join(inv.commands())}")
    idx = model_index(engine.id)
    comps: dict[str, Any] = {}
    for name, part in inv.parts.items():
        if part.source == "none":
            comps[name] = None
        elif part.source == "config":
            cls = _lib_class(part.cls_name)
            comps[name] = cls.from_pretrained(str(configs_dir(engine.id)), subfolder=name)
        elif part.source == "tokenizer":
            from transformers import AutoTokenizer
            comps[name] = AutoTokenizer.from_pretrained(str(part.path), local_files_only=True)
        else:
            comps[name] = load_part(engine.id, part, dtype)
    cls = getattr(diffusers, engine.pipeline_class)
    import inspect
    accepted = set(inspect.signature(cls.__init__).parameters)
    opts = {k: v for k, v in idx.items()
            if not k.startswith("_") and not isinstance(v, list) and k in accepted}
    kw = {**{k: v for k, v in comps.items() if k in accepted}, **opts, **engine.load_kwargs()}
    pipe = cls(**kw)
    pipe._studio_sources = {n: f"{p.format}: {p.path}" for n, p in inv.parts.items() if p.path}
    return pipe


def report_lines(inv: Inventory) -> list[str]:
    """Per component: file, format and size, or what is missing; then rejected files and commands."""
    if inv.folder is not None:
        return [f"diffusers folder {inv.folder}"]
    lines = []
    for name, p in inv.parts.items():
        if p.source in ("none", "config"):
            continue
        if p.present:
            lines.append(f"{name:<14} {p.format}, {human_bytes(p.size_bytes)}: {p.path}")
        else:
            lines.append(f"{name:<14} MISSING ({p.detail})")
    lines += [f"not used: {r}" for r in inv.rejected]
    cmds = inv.commands()
    lines += [f"get it: {c}" for c in cmds[:1]]
    lines += [f"or as ComfyUI single files (fp8; the tokenizer still from the first, --include "
              f'"tokenizer/*"): {c}' for c in cmds[1:]]
    return lines


def human_bytes(n: int) -> str:
    """Bytes as '12.3 MB' ('—' for none)."""
    if not n:
        return "—"
    x = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if x < 1000 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return str(n)
