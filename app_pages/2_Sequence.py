"""Sequence: several clips and title cards, transitions and music -> one short video, exported as a job."""

from __future__ import annotations

import streamlit as st

from studio.ui.sequence import render

st.set_page_config(page_title="Sequence · Studio", page_icon="🎞️", layout="wide")
render()
