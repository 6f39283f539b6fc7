"""The Sequence page's sound: each clip's own sound and level on the timeline, its volume and pitch
choice, the bed's ducking, the loudness target, and a player for the whole mix.

Strips are the clip's sound after its trim, speed and volume (`service.clip_sound_strip`), cached
by the file's identity and those settings; the mix is the one the export muxes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from . import service

STRIP_W, STRIP_H = 360, 56
FLOOR_DB = -48.0     # the strip's scale: peaks in dBFS from here (the centre line) to 0 (the edges)
DUCK_DEFAULTS: dict[str, Any] = {"seq_a_duck": 12.0, "seq_a_att": 0.25, "seq_a_rel": 0.5}
LOUD_DEFAULTS: dict[str, Any] = {"seq_loud_on": True, "seq_loud": -14.0, "seq_tp": -1.0}


@st.cache_data(max_entries=128, show_spinner=False)
def _strip(key: tuple[Any, ...], entry: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return service.clip_sound_strip(entry)
    except ValueError:
        return None


def strip_image(strip: list[float], muted: bool = False) -> np.ndarray:
    """A waveform strip: each slice's peak on a dB scale (FLOOR_DB..0), mirrored about the middle."""
    img = np.empty((STRIP_H, STRIP_W, 3), np.uint8)
    img[:] = (32, 35, 46)
    img[STRIP_H // 2, :] = (70, 74, 88)
    peaks = np.interp(np.linspace(0, len(strip) - 1, STRIP_W), np.arange(len(strip)), strip)
    db = 20 * np.log10(np.maximum(peaks, 1e-6))
    frac = np.clip((db - FLOOR_DB) / -FLOOR_DB, 0, 1)
    color = np.array([120, 120, 130] if muted else [80, 160, 255], np.uint8)
    mid = STRIP_H / 2
    for x, f in enumerate(frac):
        h = int(round(f * (STRIP_H / 2 - 3)))
        if h:
            img[int(mid - h):int(mid + h) + 1, x] = color
    return img


def sound_row(item: dict[str, Any]) -> None:
    """One clip's sound on the timeline: its waveform and level, its volume and pitch choice."""
    iid = item["_id"]
    path = Path(item["path"])
    try:
        st_ = path.stat()
    except OSError:
        return
    for k, v in ((f"seq_{iid}_vol", float(item.get("volume", 1.0))),
                 (f"seq_{iid}_pitch", bool(item.get("keep_pitch", True)))):
        st.session_state.setdefault(k, v)
    item["volume"] = float(st.session_state[f"seq_{iid}_vol"])           # the widgets' latest values,
    item["keep_pitch"] = bool(st.session_state[f"seq_{iid}_pitch"])      # so the strip follows them
    entry = {k: item.get(k) for k in ("path", "trim_in", "trim_out", "speed", "volume", "keep_pitch")}
    info = _strip((str(path), st_.st_mtime_ns, st_.st_size, *entry.values()), entry)
    if info is None:
        st.caption("🔇 no sound in this clip")
        return
    c = st.columns([3, 1.4])
    with c[0]:
        db = info["dbfs"]
        level = "silent" if not math.isfinite(db) else f"{db:.1f} dBFS"
        ch = {1: "mono", 2: "stereo"}.get(info["channels"], f"{info['channels']} ch")
        st.image(strip_image(info["strip"], muted=not math.isfinite(db)), width="stretch")
        st.caption(f"🔊 {level} · {info['rate'] / 1000:g} kHz {ch}")
    with c[1]:
        item["volume"] = float(st.number_input(
            "Volume", 0.0, 4.0, step=0.1, key=f"seq_{iid}_vol",
            help="this clip's own sound (0 mutes it). Keep pitch: at other speeds, keep the pitch "
                 "(time-stretch) or let it follow the speed"))
        item["keep_pitch"] = bool(st.checkbox("Keep pitch", key=f"seq_{iid}_pitch"))


def duck_controls() -> dict[str, Any]:
    """The bed's ducking under clip sound: depth in dB, attack and release in seconds."""
    for k, v in DUCK_DEFAULTS.items():
        st.session_state.setdefault(k, v)
    c = st.columns(3)
    return {"duck_db": float(c[0].number_input("Duck (dB)", 0.0, 60.0, step=1.0, key="seq_a_duck",
                                               help="how far the music dips while a clip has sound")),
            "duck_attack": float(c[1].number_input("Attack (s)", 0.0, 10.0, step=0.05, key="seq_a_att")),
            "duck_release": float(c[2].number_input("Release (s)", 0.0, 10.0, step=0.05, key="seq_a_rel"))}


def loudness_controls() -> dict[str, Any]:
    """The export's loudness target (LUFS, or off) and true-peak ceiling (dBTP)."""
    for k, v in LOUD_DEFAULTS.items():
        st.session_state.setdefault(k, v)
    c = st.columns(3)
    on = c[0].checkbox("Loudness", key="seq_loud_on",
                       help="normalise the export's loudness, measured with pyloudnorm (ITU-R BS.1770-4); "
                            "-14 LUFS suits the streaming sites")
    lufs = float(c[1].number_input("Target (LUFS)", -40.0, -5.0, step=1.0, key="seq_loud", disabled=not on))
    tp = float(c[2].number_input("Peak (dBTP)", -9.0, 0.0, step=0.5, key="seq_tp", disabled=not on))
    return {"loudness": lufs if on else None, "true_peak": tp}


def load_sound_state(d: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """Set the sound widgets from an opened spec (bed ducking, loudness, each clip's volume)."""
    ss = st.session_state
    a = d.get("audio") or {}
    ss["seq_a_duck"] = float(a.get("duck_db", 12.0))
    ss["seq_a_att"], ss["seq_a_rel"] = float(a.get("duck_attack", 0.25)), float(a.get("duck_release", 0.5))
    o = d.get("output") or {}
    ss["seq_loud_on"] = o.get("loudness", -14.0) is not None
    ss["seq_loud"], ss["seq_tp"] = float(o.get("loudness") or -14.0), float(o.get("true_peak", -1.0))
    for it in items:
        if "path" in it:
            ss[f"seq_{it['_id']}_vol"] = float(it.get("volume", 1.0))
            ss[f"seq_{it['_id']}_pitch"] = bool(it.get("keep_pitch", True))


def mix_section(d: dict[str, Any]) -> None:
    """Play the whole mix (what the export muxes), with its loudness."""
    if st.button("▶ Play the mix", key="seq_mix"):
        with st.spinner("Mixing…"):
            try:
                st.session_state["seq_mix_wav"] = service.sequence_mix_wav(d)
            except ValueError as e:
                st.error(service.plain_error(e))
    got = st.session_state.get("seq_mix_wav")
    if got:
        wav, report = got
        st.audio(wav, format="audio/wav")
        loud = (report or {}).get("loudness")
        if loud and loud.get("after_lufs") is not None:
            st.caption(f"Mix: {loud['after_lufs']:.1f} LUFS integrated (was {loud['before_lufs']:.1f}), "
                       f"true peak {loud['true_peak_dbtp']:.1f} dBTP")
        elif report is None:
            st.caption("This sequence has no sound.")
