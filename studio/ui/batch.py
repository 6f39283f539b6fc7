"""Batches (several seeds or several prompts from one submit) and named presets of settings.

A preset is the form's request without its input (image, prompt, audio), kept as JSON under
`<outputs>/.presets/<name>.json`; loading one fills the form's settings and leaves the input alone.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import streamlit as st

from ..outputs import atomic_path, outputs_dir

MAX_BATCH = 16
SEED_MAX = 2**32 - 1
_NAME = re.compile(r"^[\w][\w .-]{0,59}$")
INPUT_FIELDS = ("image", "prompt", "audio")


def batch_requests(req: Any, seeds: int, prompts: list[str]) -> list[Any]:
    """One request per (prompt, seed): prompts in order (none: the request's own), seeds counting up
    from the request's seed.  ValueError when that is more than `MAX_BATCH` jobs."""
    prompts = [p.strip() for p in prompts if p.strip()] or [req.prompt]
    seeds = int(seeds)
    if seeds < 1:
        raise ValueError(f"seeds={seeds} must be at least 1")
    if len(prompts) * seeds > MAX_BATCH:
        raise ValueError(f"{len(prompts)} prompt(s) × {seeds} seed(s) = {len(prompts) * seeds} jobs, "
                         f"over the {MAX_BATCH} one submit may queue")
    return [dataclasses.replace(req, prompt=p, seed=(req.seed + k) % (SEED_MAX + 1))
            for p in prompts for k in range(seeds)]


def batch_section() -> tuple[int, list[str]]:
    """The batch expander: how many seeds, and prompts one per line.  Returns (seeds, prompts)."""
    with st.expander("Batch: several seeds or prompts"):
        seeds = st.number_input("Seeds (one job each, counting up from Seed)", 1, MAX_BATCH, step=1,
                                key="gen_batch_seeds")
        text = st.text_area("Prompts, one per line (empty: the motion prompt above)", key="gen_batch_prompts",
                            height=90)
    return int(seeds), [ln for ln in str(text).splitlines() if ln.strip()]


def presets_dir() -> Path:
    """Where named presets are kept."""
    return outputs_dir() / ".presets"


def check_name(name: str) -> str:
    """A preset name (letters, digits, space, `_ . -`, up to 60), else ValueError naming it."""
    name = str(name).strip()
    if not _NAME.match(name):
        raise ValueError(f"preset name {name[:80]!r} must be 1–60 letters, digits, spaces, '_', '.' or '-'")
    return name


def list_presets() -> list[str]:
    """The saved presets' names, sorted."""
    d = presets_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def save_preset(name: str, request: dict[str, Any]) -> Path:
    """Save a request's settings (its input left out) as preset `name` (replacing one of that name)."""
    name = check_name(name)
    data = {k: v for k, v in request.items() if k not in INPUT_FIELDS}
    dest = presets_dir() / f"{name}.json"
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    return dest


def load_preset(name: str) -> dict[str, Any]:
    """A saved preset's settings (ValueError when there is no such preset)."""
    p = presets_dir() / f"{check_name(name)}.json"
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        raise ValueError(f"there is no preset {name!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset {name!r} is not a settings object")
    return {k: v for k, v in data.items() if k not in INPUT_FIELDS}


def presets_section(current: Any) -> None:
    """Save the form as a named preset, or load one (applied before the next run's widgets)."""
    with st.expander("Presets"):
        names = list_presets()
        c = st.columns([3, 1])
        pick = c[0].selectbox("Saved presets", names, key="gen_preset_pick", index=None,
                              placeholder="none saved yet" if not names else "choose one")
        if c[1].button("Load", key="gen_preset_load", disabled=not pick, width="stretch"):
            st.session_state["_preset"] = pick
            st.rerun()
        c = st.columns([3, 1])
        name = c[0].text_input("Save these settings as", key="gen_preset_name", max_chars=60)
        if c[1].button("Save", key="gen_preset_save", disabled=current is None or not name.strip(),
                       width="stretch"):
            try:
                save_preset(name, current.to_dict())
                st.toast(f"Saved preset {name.strip()}")
            except ValueError as e:
                st.error(str(e))
