"""The LoRA library for the pages: a view of `studio.loras`, the pick-time check, and the LoRA block
of the Models & LoRAs page (cards with a settable family, and the upload)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

log = logging.getLogger(__name__)
MAX_LORA_MB = 2048
UNSET = "(not set)"


@dataclass
class LoraView:
    """What the pages show of a LoRA."""

    name: str
    family: str = ""
    trigger_words: list[str] = field(default_factory=list)
    default_strength: float = 1.0
    preview: str | None = None
    path: str | None = None
    problems: list[str] = field(default_factory=list)
    expert: str = ""           # "high_noise" / "low_noise" (a Wan 2.2 A14B pair's half); "" = both
    expert_source: str = ""    # "metadata" or "name"


EXPERT_CHOICES = ["both", "high_noise", "low_noise"]
EXPERT_LABELS = {"both": "both experts (not one half of a pair)", "high_noise": "high-noise expert",
                 "low_noise": "low-noise expert"}


def library() -> Any:
    """The `studio.loras` module."""
    import studio.loras as mod
    return mod


def _view(info: Any) -> LoraView:
    return LoraView(name=info.name, family=info.family or "", trigger_words=list(info.trigger_words),
                    default_strength=float(info.default_strength),
                    preview=str(info.preview) if info.preview else None, path=str(info.path),
                    problems=list(info.problems), expert=info.expert or "",
                    expert_source=info.expert_source)


def list_loras() -> list[LoraView]:
    """Every LoRA in the library ([] when listing fails: a broken library must not break a page)."""
    try:
        return [_view(x) for x in library().list_loras()]
    except Exception as e:  # noqa: BLE001
        log.warning("listing LoRAs failed: %s", e)
        return []


def save_metadata(lv: LoraView, updates: dict[str, Any]) -> Path:
    """Write edited metadata (trigger words, default strength, family) into `<name>.json`."""
    return library().save_meta(lv.name, updates)


def lora_families() -> dict[str, list[str]]:
    """LoRA family -> the engines (ids) of that family, for engines that take LoRAs."""
    from .service import engines_info
    out: dict[str, list[str]] = {}
    for e in engines_info():
        if e.supports_loras and e.family:
            out.setdefault(e.family, []).append(e.id)
    return out


def check_for_engine(name: str, engine_id: str) -> str | None:
    """Pick-time check of a library LoRA against one engine: None when it fits, else the reason."""
    from ..engines import get_engine
    mod = library()
    try:
        rep = mod.validate_lora(mod.find_lora(name).path, get_engine(engine_id))
    except ValueError as e:
        return str(e)
    return None if rep.ok else rep.message


def validate_upload(path: Path, engine_ids: list[str]) -> tuple[list[str], list[str], str | None]:
    """Check an uploaded LoRA against each engine that takes LoRAs, reading its keys only:
    (engines it fits, reasons it does not fit the others, the family its keys say)."""
    from ..engines import get_engine
    from ..loras import guess_family, read_shapes
    mod = library()
    if Path(path).suffix != ".safetensors":
        raise ValueError(f"{Path(path).name}: LoRAs must be .safetensors files")
    guess = guess_family(read_shapes(path))[0]
    fits, reasons = [], []
    for eid in engine_ids:
        try:
            engine = get_engine(eid)
            if not getattr(engine, "supports_loras", False):
                if getattr(engine, "no_lora_reason", ""):
                    reasons.append(f"{eid}: {engine.no_lora_reason}")
                continue
            report = mod.validate_lora(path, engine)
        except (ValueError, ImportError) as e:
            reasons.append(f"{eid}: {e}")
            continue
        (fits if report.ok else reasons).append(eid if report.ok else f"{eid}: {report.message}")
    return fits, reasons, guess


# ---- the page block --------------------------------------------------------------------------

def _family_options(current: str, families: list[str]) -> list[str]:
    opts = [UNSET, *sorted(families)]
    if current and current not in opts:
        opts.append(current)
    return opts


def lora_card(lv: LoraView, families: list[str]) -> None:
    """One LoRA: preview, metadata problems, and a form for family, trigger words and strength."""
    with st.container(border=True):
        c = st.columns([1, 3])
        if lv.preview and Path(lv.preview).is_file():
            c[0].image(lv.preview, width="stretch")
        else:
            c[0].caption("no preview")
        with c[1]:
            head = f"**{lv.name}** · family `{lv.family or '?'}`"
            if lv.expert:
                head += f" · Wan 2.2 A14B {EXPERT_LABELS[lv.expert]} (from its {lv.expert_source})"
            st.markdown(head)
            for p in lv.problems:
                st.warning(p)
            with st.form(f"lora_meta_{lv.name}"):
                opts = _family_options(lv.family, families)
                fam = st.selectbox("Family (the engines it is for)", opts,
                                   index=opts.index(lv.family) if lv.family in opts else 0,
                                   key=f"lora_family_{lv.name}")
                words = st.text_input("Trigger words (comma separated)", ", ".join(lv.trigger_words))
                strength = st.number_input("Default strength", value=float(lv.default_strength), step=0.05)
                expert = st.selectbox("Wan 2.2 A14B expert (high/low-noise pairs)", EXPERT_CHOICES,
                                      index=EXPERT_CHOICES.index(lv.expert or "both"),
                                      format_func=EXPERT_LABELS.get, key=f"lora_expert_{lv.name}")
                if st.form_submit_button("Save metadata"):
                    try:
                        trig = [w.strip() for w in words.split(",") if w.strip()]
                        upd = {"trigger_words": trig, "default_strength": float(strength),
                               "family": None if fam == UNSET else fam}
                        if expert != (lv.expert or "both") or lv.expert_source == "metadata":
                            upd["expert"] = expert
                        save_metadata(lv, upd)
                        st.session_state["lora_saved"] = lv.name
                        st.rerun()
                    except ValueError as e:
                        st.error(f"Not saved: {e}")
            if st.session_state.get("lora_saved") == lv.name:
                st.success(f"Saved {lv.name}")


def _stored_family(fits: list[str], guess: str | None, families: dict[str, list[str]]) -> str | None:
    """The family to write beside an upload: the one its keys say, else the only one it fits."""
    if guess in families:
        return guess
    fams = {f for f, ids in families.items() if set(ids) & set(fits)}
    return fams.pop() if len(fams) == 1 else None


def lora_upload(families: dict[str, list[str]]) -> None:
    """Accept a .safetensors LoRA only when at least one engine can use it; never replace one of the
    same name unless 'Replace' is ticked."""
    from .service import engine_ids
    mod = library()
    up = st.file_uploader("Add a LoRA (.safetensors)", type=["safetensors"], key="lora_upload")
    replace = st.checkbox("Replace a LoRA of the same name", key="lora_replace")
    done = st.session_state.get("lora_upload_done")
    if up is None:
        return
    if done and done[0] == (up.file_id, replace):  # this upload was handled on an earlier run
        (st.success if done[1] else st.error)(done[2])
        return

    def finish(ok: bool, msg: str) -> None:
        st.session_state["lora_upload_done"] = ((up.file_id, replace), ok, msg)
        (st.success if ok else st.error)(msg)
    name = Path(up.name).stem
    if not up.name.endswith(".safetensors"):
        return finish(False, f"{up.name}: LoRAs must be .safetensors files "
                             f"(pickled .ckpt/.pt/.bin are refused)")
    data = up.getvalue()
    if len(data) > MAX_LORA_MB * 1e6:
        return finish(False, f"{up.name} is {len(data) / 1e6:.0f} MB, over the {MAX_LORA_MB} MB limit")
    try:
        mod.check_name(name)
        if mod.lora_path(name).exists() and not replace:
            return finish(False, f"{up.name} was refused: a LoRA named {name!r} already exists; tick "
                                 f"'Replace a LoRA of the same name' to overwrite it")
    except ValueError as e:
        return finish(False, f"{up.name} was refused: {e}")
    with tempfile.TemporaryDirectory(prefix="lora-upload-") as td:
        tmp = Path(td) / f"{name}.safetensors"
        tmp.write_bytes(data)
        try:
            fits, reasons, guess = validate_upload(tmp, engine_ids())
        except Exception as e:  # noqa: BLE001 - corrupt file: refuse with the reason
            return finish(False, f"{up.name} was refused: {e}")
        if not fits:
            why = "; ".join(reasons) or "no installed engine takes LoRAs"
            return finish(False, f"{up.name} was refused: it fits no engine ({why})")
        fam = _stored_family(fits, guess, families)
        try:
            mod.add_lora(tmp, name, replace=replace, family=fam)
        except ValueError as e:
            return finish(False, f"{up.name} was refused: {e}")
    finish(True, f"Added {name}.safetensors (family {fam or 'not set: choose it below'}); it fits: "
                 f"{', '.join(fits)}")


def library_block() -> None:
    """The LoRA library: the upload first (so the list below already shows what it added), then the
    cards, or 'No LoRAs yet.' only when the library is really empty."""
    st.subheader("LoRA library")
    listing = st.container()
    families = lora_families()
    lora_upload(families)
    with listing:
        lib = list_loras()
        if not lib:
            st.caption("No LoRAs yet.")
        for lv in lib:
            lora_card(lv, list(families))
