"""Gallery: every output with a thumbnail, filters, manifest view and delete."""

from __future__ import annotations

import streamlit as st

from studio.ui.gallery import render

st.set_page_config(page_title="Gallery · Studio", page_icon="🖼️", layout="wide")
render()
