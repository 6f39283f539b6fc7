"""LoRAs for the engines: the check against a denoiser's layers, loading and stacking.

The library on disk (names, sidecar metadata, uploads) is `studio.loras.library`; the package's
`__init__` is the one face the rest of the studio uses.

Wan 2.2 A14B has two denoisers (experts) and its LoRAs come as high-noise/low-noise pairs: each
half of a pair is its own library entry, loaded into its expert only (`transformer` or
`transformer_2`).  Which half it is comes from `"expert"` in the sidecar, else from the file name
(`…high_noise…`/`…low_noise…`, or a last word `HIGH`/`LOW`); a LoRA that names no expert goes into
both.  On an engine with one denoiser, a LoRA whose sidecar names an expert is refused.

Engines with `lora_mode == "pipeline"` (LTX, Wan) get every layout of `studio.loras.formats`
converted to diffusers/peft keys and loaded through their pipeline's `load_lora_weights`; the
check before that reads the file's keys and shapes only and refuses anything that would load
partly or not at all.  Engines with `lora_mode == "peft"` (I2VGen-XL, SVD: no diffusers loader)
get our own low-rank layers (`studio.loras.layers`).  Either way the base weights are never
reloaded, several LoRAs stack with their own strengths, and strength 0 (or no LoRA) gives exactly
the base output.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import formats as lf
from .layers import activate, parse_keys, shapes_fit, target_modules
from .layers import inject as _inject
from .library import EXPERTS, LoraError, LoraInfo, find_lora, load_state, lora_hash, read_info

log = logging.getLogger(__name__)


@dataclass
class LoraReport:
    """What `validate_lora` found."""

    name: str
    family: str | None
    engine_family: str
    matched: int
    unmatched: int
    unmatched_examples: list[str]
    ok: bool
    message: str
    layout: str = ""
    trained_for: str | None = None


def validate_lora(path: Path | str, engine: Any, model: Any | None = None) -> LoraReport:
    """Check a LoRA file against an engine's family and its denoiser's modules, reading keys only.

    Refuses (ok=False) a family mismatch, a non-safetensors file, a LoRA whose keys match none of
    the denoiser's modules or only some of them.  The denoiser's modules come from `model`, else
    the engine's `lora_targets()` (its config, no weights); without either, only the layout and
    the family its key names say are checked.
    """
    path = Path(path)
    info = read_info(path)
    fam = engine.family

    def refuse(msg: str, n: int = 0) -> LoraReport:
        return LoraReport(info.name, info.family, fam, 0, n, [], False, msg)
    if path.suffix != ".safetensors":
        return refuse(f"{path.name}: only .safetensors LoRAs are accepted (never pickles)")
    if not getattr(engine, "supports_loras", True):
        why = getattr(engine, "no_lora_reason", "") or f"engine {engine.id!r} takes no LoRAs"
        return refuse(f"LoRA {info.name!r} cannot be used: {why}")
    try:
        shapes = lf.read_shapes(path)
    except LoraError as e:  # junk, renamed or cut short: plain words
        return refuse(str(e))
    except OSError as e:
        return refuse(f"cannot read {path.name}: {e.strerror or e}")
    if info.family and not lf.family_fits(info.family, fam):
        return refuse(f"LoRA {info.name!r} is for family {info.family!r}, engine {engine.id!r} needs {fam!r}",
                      len(shapes))
    experts = tuple(getattr(engine, "experts", ()) or ())
    if info.expert_source == "metadata" and not experts:
        return refuse(f"LoRA {info.name!r} is the {info.expert.replace('_', '-')} half of a Wan 2.2 A14B "
                      f"pair (its metadata says expert={info.expert!r}); engine {engine.id!r} has one "
                      f"denoiser", len(shapes))
    if getattr(engine, "lora_mode", "peft") == "pipeline":
        slot = expert_slots(engine, info)[-1]   # the experts share a layout: one check covers both
        targets = lf.module_shapes(model) if model is not None else _targets(engine, slot)
        if targets is not None:
            return _scan_report(info, engine, path, lf.scan(shapes, targets, _kind(engine)))
    guess, why = lf.guess_family(shapes)
    if guess is not None and not lf.family_fits(guess, fam) and (guess == "unet") != (fam in _UNETS):
        return refuse(f"LoRA {info.name!r} was trained for {guess} ({why}); engine {engine.id!r} "
                      f"needs {fam!r}: none of its {len(shapes)} keys fit engine {engine.id!r}", len(shapes))
    if model is not None:
        mods = target_modules(model)
        groups, unmatched = parse_keys(load_state(path), set(mods))
        unmatched += [m for m, g in groups.items() if not shapes_fit(g, mods[m])]
        matched = 2 * sum(1 for m in groups if m not in unmatched)
    else:
        pairs = [k for k in shapes if lf.split_key(k)[2] in ("down", "up")]
        matched, unmatched = len(pairs), [k for k in shapes if k not in pairs and not k.endswith(".alpha")]
    ok = matched > 0
    msg = (f"LoRA {info.name!r}: {matched} key(s) match, {len(unmatched)} do not"
           + ("" if ok else f" — refused: none of its keys fit engine {engine.id!r}"))
    return LoraReport(info.name, info.family, fam, matched, len(unmatched), unmatched[:5], ok, msg,
                      trained_for=guess)


_UNETS = {"i2vgen-xl", "svd"}


def _kind(engine: Any) -> str:
    return "wan" if str(engine.family).startswith("wan") else "other"


def expert_slots(engine: Any, info: LoraInfo) -> list[str]:
    """The pipeline attributes a LoRA goes into: the engine's denoiser, or for an engine with
    experts (Wan 2.2 A14B: high-noise `transformer`, low-noise `transformer_2`) the one its
    `expert` names, else both."""
    experts = list(getattr(engine, "experts", ()) or ())
    if not experts:
        return [engine.denoiser]
    if info.expert in EXPERTS and len(experts) == len(EXPERTS):
        return [experts[EXPERTS.index(info.expert)]]
    return experts


def _targets(engine: Any, attr: str | None = None) -> dict[str, tuple[int, ...]] | None:
    fn = getattr(engine, "lora_targets", None)
    try:
        return (fn(attr) if attr else fn()) if fn is not None else None
    except Exception as e:  # noqa: BLE001 - no config: fall back to the layout check
        log.warning("%s: denoiser layers unknown (%s); LoRA keys are checked by layout only", engine.id, e)
        return None


def _scan_report(info: LoraInfo, engine: Any, path: Path, sc: lf.Scan) -> LoraReport:
    problems = list(sc.problems)
    if sc.norm_diffs:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            nonzero = [k for k in sc.norm_diffs if bool(f.get_tensor(k).abs().max() > 0)]
        if nonzero:
            problems.append(f"{len(nonzero)} nonzero norm-layer diff(s) (e.g. {nonzero[0]}), which "
                            f"cannot be applied without changing the base weights")
    trained = f"trained for {sc.family}" if sc.family else "family unknown"
    if sc.family == "wan2.1-t2v-14b":   # Wan 2.2 A14B's experts have exactly these layers
        trained += " or Wan 2.2 A14B (same layers)"
    half = ""
    if info.expert:
        half = f"{info.expert.replace('_', '-')} half of a Wan 2.2 A14B pair (by its {info.expert_source})"
        experts = tuple(getattr(engine, "experts", ()) or ())
        into = "transformer" if info.expert == "high_noise" else "transformer_2"
        half = (f"; the {half}, loaded into {into}" if experts
                else f"; named as the {half}, but engine {engine.id!r} has one denoiser")
    head = f"LoRA {info.name!r} ({sc.layout_label} layout, {trained}): "
    n_bad = sc.total - sc.matched_keys - len(sc.norm_diffs)
    if sc.matched_keys == 0:
        msg = (head + f"none of its {sc.total} keys fit engine {engine.id!r} — refused ("
               + "; ".join(problems[:3]) + ")")
    elif problems:
        msg = (head + f"{sc.matched_keys} of its {sc.total} keys match engine {engine.id!r}; refused, it "
               f"would load only partly: " + "; ".join(problems[:3]))
    else:
        msg = head + f"{sc.matched_keys} of its {sc.total} keys match engine {engine.id!r}" + (
            f" ({len(sc.norm_diffs)} zero norm diffs skipped)" if sc.norm_diffs else "") + (
            " (DoRA)" if sc.dora else "") + half
    ok = sc.matched_keys > 0 and not problems
    return LoraReport(info.name, info.family, engine.family, sc.matched_keys, max(n_bad, 0),
                      sc.unmatched[:5], ok, msg, layout=sc.layout, trained_for=sc.family)


def check_refs(engine: Any, refs: list[Any]) -> None:
    """Refuse (LoraError) bad names, missing or incompatible LoRAs, and LoRAs on an engine without
    LoRA support; called by `GenerationRequest.check` at submit."""
    if refs and not getattr(engine, "supports_loras", False):
        names = ", ".join(repr(getattr(r, "name", r)) for r in refs)
        why = getattr(engine, "no_lora_reason", "")
        raise LoraError(f"engine {engine.id!r} takes no LoRAs (got {names})" + (f": {why}" if why else ""))
    seen: set[str] = set()
    for r in refs:
        info = find_lora(r.name)
        if r.name in seen:
            raise LoraError(f"LoRA {r.name!r} is listed twice")
        seen.add(r.name)
        rep = validate_lora(info.path, engine)
        if not rep.ok:
            raise LoraError(rep.message)


def inject(model: Any, name: str, path: Path) -> LoraReport:
    """Load a LoRA into our low-rank layers of `model` under `name` (inactive until activated)."""
    matched, unmatched = _inject(model, name, load_state(path))
    return LoraReport(name, None, "", matched, len(unmatched), unmatched[:5], matched > 0,
                      f"LoRA {name!r}: {matched} key(s) loaded, {len(unmatched)} did not match")


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _load_pipeline_lora(pipe: Any, engine: Any, name: str, path: Path, slot: str) -> None:
    """Convert any understood layout to peft keys, load it into `pipe.<slot>` (the denoiser, or
    one expert), and check every module took it."""
    from safetensors import safe_open
    model = getattr(pipe, slot)
    rep = validate_lora(path, engine, model)
    if not rep.ok:
        raise LoraError(rep.message)
    sc = lf.scan(lf.read_shapes(path), lf.module_shapes(model), _kind(engine))
    second = slot == "transformer_2"   # diffusers loads `transformer.*` keys into the second expert
    with safe_open(str(path), framework="pt") as f:
        sd = lf.to_peft(sc, f.get_tensor, prefix="transformer" if second else engine.denoiser)
    adapter = _adapter(name)
    if second:
        pipe.load_lora_weights(sd, adapter_name=adapter, load_into_transformer_2=True)
    else:
        pipe.load_lora_weights(sd, adapter_name=adapter)
    took = {n for n, m in model.named_modules() if adapter in getattr(m, "lora_A", {})}
    missing = sorted(set(sc.modules) - took)
    if missing:
        pipe.delete_adapters(adapter)
        raise LoraError(f"LoRA {name!r}: {len(missing)} of {len(sc.modules)} layers did not take it "
                        f"(e.g. {missing[0]}); refused rather than loaded partly")


def apply_loras(pipe: Any, engine: Any, refs: list[Any]) -> list[dict[str, Any]]:
    """Validate and switch the pipeline's LoRAs to `refs` (name, strength) without reloading the base."""
    model = getattr(pipe, engine.denoiser)
    loaded: dict[str, tuple[Any, ...]] = getattr(pipe, "_studio_loras", {})
    strengths: dict[str, float] = {}
    out = []
    for ref in refs:
        info = find_lora(ref.name)
        slots = expert_slots(engine, info)
        stamp = (*_stamp(info.path), *slots)
        if loaded.get(ref.name) != stamp:
            if ref.name in loaded and engine.lora_mode == "pipeline":  # the file (or its expert) changed
                pipe.delete_adapters(_adapter(ref.name))
                loaded.pop(ref.name)
            if engine.lora_mode == "pipeline":
                for slot in slots:
                    _load_pipeline_lora(pipe, engine, ref.name, info.path, slot)
            else:
                rep = validate_lora(info.path, engine, model)
                if not rep.ok:
                    raise LoraError(rep.message)
                if rep.unmatched:
                    log.warning("%s", rep.message)
                inject(model, ref.name, info.path)
            loaded[ref.name] = stamp
            pipe._studio_loras = loaded
        strengths[ref.name] = float(ref.strength)
        rec = {"name": ref.name, "strength": float(ref.strength), "sha256": lora_hash(ref.name)}
        if getattr(engine, "experts", ()):
            rec["experts"] = [EXPERTS[engine.experts.index(s_)] for s_ in slots]
        out.append(rec)
    if engine.lora_mode == "pipeline":
        on = [n for n in sorted(loaded) if strengths.get(n, 0.0) != 0.0]
        if getattr(engine, "experts", ()):
            _switch_experts(pipe, engine, on, strengths)
        elif on:  # only the LoRAs in use: a DoRA adapter at weight 0 is not the base output
            pipe.enable_lora()
            pipe.set_adapters([_adapter(n) for n in on], [strengths[n] for n in on])
        elif loaded:
            pipe.disable_lora()
    else:
        activate(model, strengths)
    return out


def _switch_experts(pipe: Any, engine: Any, on: list[str], strengths: dict[str, float]) -> None:
    """Per expert, the adapters in use that it holds (a pair's halves live in one expert each)."""
    for slot in engine.experts:
        model = getattr(pipe, slot, None)
        held = set(getattr(model, "peft_config", {}) or {})
        names = [n for n in on if _adapter(n) in held]
        if names:
            model.enable_lora()
            model.set_adapters([_adapter(n) for n in names], [strengths[n] for n in names])
        elif held:
            model.disable_lora()


def _adapter(name: str) -> str:
    """A peft adapter name for a LoRA name (unique: '.'/'-' names get a hash suffix)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return safe if safe == name else f"{safe}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
