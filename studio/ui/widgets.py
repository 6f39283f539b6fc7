"""Spec -> Streamlit widgets.  Every range, step, choice list and help text comes from the `Param`.

Widgets are keyed `<prefix><name>`; their values live in `st.session_state`, which is how
"reuse settings" fills them (`load_values`), after checking each value against the spec.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from ..params import Param

SLIDER_MAX_STEPS = 400   # wider ranges get a number box instead of a slider
# Labels a person reads where the parameter's name would not do ("Fps", "Crf", a bare "Motion" right
# under "Motion prompt").
LABELS = {"fps": "FPS", "crf": "CRF", "target_fps": "Target FPS", "motion": "Camera moves",
          "speed": "Camera speed", "preset": "Encoder preset", "codec": "Codec",
          "negative_prompt": "Negative prompt", "audio_fade": "Audio fade (s)"}


def label_for(p: Param) -> str:
    """The widget label of a parameter: `LABELS`, else its name in words."""
    return LABELS.get(p.name) or p.name.replace("_", " ").capitalize()


def _label(p: Param) -> str:
    return label_for(p)


def _is_int(p: Param) -> bool:
    return p.type is int


def _num(p: Param, v: Any) -> Any:
    return None if v is None else (int(v) if _is_int(p) else float(v))


def widget(p: Param, key: str, *, label: str | None = None, disabled: bool = False) -> Any:
    """Draw the widget for one parameter and return its (unchecked) value."""
    label = label or _label(p)
    if key not in st.session_state and p.default is not None:
        st.session_state[key] = p.default
    if p.type is bool:
        return st.checkbox(label, key=key, help=p.help, disabled=disabled)
    if p.choices is not None:
        opts = list(p.choices)
        if p.optional:
            opts = [None, *opts]
        if key in st.session_state and st.session_state[key] not in opts:
            st.session_state[key] = p.default
        return st.selectbox(label, opts, key=key, help=p.help, disabled=disabled,
                            format_func=lambda v: "default" if v is None else str(v))
    if p.type in (int, float):
        if p.optional:
            on = st.checkbox(f"Set {label.lower()}", key=key + "__on", help=p.help, disabled=disabled)
            if not on:
                return None
            if st.session_state.get(key) is None:
                st.session_state[key] = _num(p, p.min if p.min is not None else 1)
        step = _num(p, p.step if p.step is not None else 1)
        lo, hi = _num(p, p.min), _num(p, p.max)
        if key in st.session_state and st.session_state[key] is not None:
            st.session_state[key] = _num(p, st.session_state[key])
        use_slider = lo is not None and hi is not None and (hi - lo) / (step or 1) <= SLIDER_MAX_STEPS
        if use_slider:
            return st.slider(label, min_value=lo, max_value=hi, step=step, key=key, help=p.help,
                             disabled=disabled)
        return st.number_input(label, min_value=lo, max_value=hi, step=step, key=key, help=p.help,
                               disabled=disabled)
    if p.optional:
        text = st.text_input(label, key=key, help=p.help, disabled=disabled)
        return text.strip() or None
    return st.text_input(label, key=key, help=p.help, disabled=disabled)


def widgets(spec: dict[str, Param], names: list[str], prefix: str, *, advanced_label: str = "Advanced",
            disabled: bool = False) -> dict[str, Any]:
    """Widgets for `names` (in spec order); rarer (`advanced`) ones go in an expander."""
    names = [n for n in spec if n in names]
    values: dict[str, Any] = {}
    basic = [n for n in names if not spec[n].advanced]
    adv = [n for n in names if spec[n].advanced]
    for n in basic:
        values[n] = widget(spec[n], prefix + n, disabled=disabled)
    if adv:
        with st.expander(advanced_label):
            for n in adv:
                values[n] = widget(spec[n], prefix + n, disabled=disabled)
    return values


def check_values(spec: dict[str, Param], values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split values into the ones the spec accepts and error texts for the rest."""
    ok, errors = {}, []
    for k, v in values.items():
        if k not in spec:
            continue
        try:
            ok[k] = spec[k].check(v)
        except ValueError as e:
            errors.append(str(e))
    return ok, errors


def load_values(spec: dict[str, Param], values: dict[str, Any], prefix: str) -> list[str]:
    """Put checked values into the widgets' session state; return errors for refused ones."""
    ok, errors = check_values(spec, values)
    for k, v in ok.items():
        p = spec[k]
        if p.optional and p.type in (int, float) and p.choices is None:
            st.session_state[prefix + k + "__on"] = v is not None
        if v is None and p.type is str and p.choices is None:
            v = ""
        st.session_state[prefix + k] = v
    return errors
