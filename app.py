"""The studio's home page: what it does, which engines and models are ready, the queue at a glance.

Run with `streamlit run app.py` (`make run`); the pages/ directory holds Generate, Sequence, Gallery
and Models & LoRAs.
"""

from __future__ import annotations

import streamlit as st

from studio.ui.home import render

st.set_page_config(page_title="Image-to-video studio", page_icon="🎞️", layout="wide")
render()
