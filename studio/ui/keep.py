"""The forms' values survive a page switch.

Streamlit forgets a widget's value at the end of a run in which the widget was not drawn, so opening
the Gallery and coming back reset Frames, Interpolation, the prompt and the input radio.  Before a
page runs, `keep_forms` writes every form value of the *other* pages back into session state as a
plain value of our own; a plain value is not a widget's, so it is not dropped, and the widget with
that key takes it up again when its page is drawn.  The page being drawn is left alone (its widgets
own their values during that run), and so are buttons and uploaders (their values cannot be set).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

# url path of a page -> prefixes of its form's session keys
FORM_KEYS = {"Generate": ("gen_",), "Sequence": ("seq_",)}
# buttons, uploaders and one-shot flags: never written back
NOT_KEPT = ("gen_upload", "gen_audio_upload", "gen_use_pick", "gen_use_last", "chip_",
            "gen_preset_load", "gen_preset_save",
            "seq_upload", "seq_add_", "seq_up_", "seq_down_", "seq_rm_", "seq_storyboard", "seq_preview",
            "seq_export", "seq_dl", "seq_audio")
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)
KEPT = "_kept_forms"      # our own copy of each page's form values


def _form_keys(state: Any, prefixes: tuple[str, ...]) -> list[str]:
    if not prefixes:
        return []
    return [k for k in list(state.keys())
            if isinstance(k, str) and k.startswith(prefixes) and not k.startswith(NOT_KEPT)
            and isinstance(state[k], _PLAIN)]


def kept_keys(state: Any, current: str | None) -> list[str]:
    """The session keys `keep_forms` writes back when the page at url path `current` runs."""
    return _form_keys(state, tuple(p for page, ps in FORM_KEYS.items() if page != current for p in ps))


def keep_forms(current: str | None) -> None:
    """Before the page at url path `current` runs: write the other pages' form values back as
    plain state, and give this page's form back any value Streamlit dropped (from our own copy)."""
    ss = st.session_state
    for k in kept_keys(ss, current):
        ss[k] = ss[k]
    for k, v in dict(ss.get(KEPT, {})).items():
        if k not in ss and k.startswith(FORM_KEYS.get(current or "", ())):
            ss[k] = v


def remember_forms(current: str | None) -> None:
    """After the page at url path `current` ran: copy its form's values into our own state."""
    ss = st.session_state
    kept = dict(ss.get(KEPT, {}))
    kept.update({k: ss[k] for k in _form_keys(ss, FORM_KEYS.get(current or "", ()))})
    ss[KEPT] = kept
