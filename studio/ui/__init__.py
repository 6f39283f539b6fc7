"""Streamlit building blocks for the studio's pages: spec-driven widgets, ledger and job views.

Importing this package imports Streamlit; the core (`studio.*`) never imports it.
"""
