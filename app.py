"""The studio's entry point (`make run` starts `streamlit run app.py`): the sidebar navigation.

The home page (what the studio does, readiness, the queue) is `studio.ui.home.render`, listed as
"Home"; Generate, Sequence, Gallery and Models & LoRAs are the scripts in app_pages/.  That folder
is not called pages/ on purpose: beside a pages/ folder Streamlit serves a page opened by its URL
(/Generate) in its old multipage mode, without this navigation, listing the home page as "app".
"""

from __future__ import annotations

import streamlit as st

from studio.ui.home import HOME, PAGES, render
from studio.ui.keep import keep_forms, remember_forms

st.set_page_config(page_title="Image-to-video studio", page_icon="🎞️", layout="wide")
home = st.Page(render, title=HOME[0], icon=HOME[1], default=True)
nav = st.navigation([home, *(st.Page(path, title=label, icon=icon, url_path=url)
                             for path, label, icon, url in PAGES)])
keep_forms(nav.url_path)       # the other pages' form values survive this page's run
nav.run()
remember_forms(nav.url_path)   # (not reached after st.rerun/st.stop: the next run copies them)
