"""sitechat's example app: chat with a website, and add sites to its index.

Run it from anywhere (the offline defaults need no API key)::

    SITECHAT_INDEX=./sitechat-index streamlit run examples/app/app.py

It uses only sitechat's public API; copy it and make it yours. Settings come from the
``SITECHAT_*`` environment variables (see the configuration docs); the app adds a few of its
own: ``SITECHAT_APP_TITLE``, ``SITECHAT_APP_SUGGESTIONS`` (example questions, separated by
``|``) and ``SITECHAT_APP_ALLOW_INGEST`` (``false`` hides the ingest page).
"""

from __future__ import annotations

import streamlit as st

import sitechat

import resources

st.set_page_config(
    page_title=resources.app_title(),
    page_icon=":material/forum:",
    layout="centered",
    initial_sidebar_state="expanded",
)
try:
    resources.setup_logging()
except sitechat.SitechatError as exc:  # a bad SITECHAT_LOG__* value
    resources.cannot_start(exc)

pages = [st.Page("pages/chat.py", title="Chat", icon=":material/forum:", default=True)]
if resources.ingest_allowed():
    pages.append(st.Page("pages/ingest.py", title="Add a site", icon=":material/travel_explore:"))
st.navigation(pages).run()
