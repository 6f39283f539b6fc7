"""Models & LoRAs: engine and post-processing model status, weight fetches, the LoRA library."""

from __future__ import annotations

import streamlit as st

from studio.ui.models import render

st.set_page_config(page_title="Models & LoRAs · Studio", page_icon="🧩", layout="wide")
render()
