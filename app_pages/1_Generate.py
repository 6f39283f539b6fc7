"""Generate: image + motion prompt + engine + LoRAs + parameters -> a queued job -> a clip."""

from __future__ import annotations

import streamlit as st

from studio.ui.generate_page import render

st.set_page_config(page_title="Generate · Studio", page_icon="🎬", layout="wide")
render()
