"""The ingest page: add a website or a folder of pages to the index the chat answers from."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import ingest_ui
import resources
from rendering import inline_code, is_web_url

settings = resources.page_settings()

st.title("Add a site")
st.caption(
    f"Pages go into the index at {inline_code(settings.index)}. Ingesting again only "
    "re-embeds pages that changed, and drops pages that disappeared."
)

# required: clicking the selected option again must not leave the form without a kind
kind = st.segmented_control(
    "Source", ["Website", "Folder"], default="Website", required=True, label_visibility="collapsed"
)
folder = kind == "Folder"  # anything else is a website, and is checked as one

with st.form("ingest"):
    if folder:
        source = st.text_input(
            "Folder on the server",
            value=str(resources.SAMPLE_SITE),
            help="HTML and Markdown files under this folder are read.",
        )
        base_url = st.text_input(
            "Published at (optional)",
            placeholder="https://docs.example.com/",
            help="Where these files are served, so that sources link to the live pages. "
            "Without it, sources are shown as file names.",
        )
        allow_private = False
    else:
        source = st.text_input("Website address", placeholder="https://docs.example.com/")
        base_url = ""
        allow_private = st.checkbox(
            "Allow private network addresses",
            help="Needed for an intranet or a server on this machine. Leave it off on a public "
            "deployment: it would let visitors make the server fetch internal addresses.",
        )
    with st.expander("Limits"):
        left, right = st.columns(2)
        max_pages = left.number_input(
            "Most pages", min_value=1, max_value=100_000, value=settings.ingest.max_pages
        )
        max_depth = right.number_input(
            "Most links deep", min_value=0, max_value=100, value=settings.ingest.max_depth
        )
    submitted = st.form_submit_button("Start", type="primary", icon=":material/play_arrow:")

if submitted:
    source = source.strip()
    base_url = base_url.strip()
    if not folder and not is_web_url(source):
        st.error("Enter the address of a website, starting with http:// or https://.")
    elif folder and not Path(source).is_dir():
        st.error("That folder does not exist on the server.")
    elif base_url and not is_web_url(base_url):
        st.error("'Published at' must be an address starting with http:// or https://.")
    else:
        limits = settings.ingest.model_copy(
            update={"max_pages": int(max_pages), "max_depth": int(max_depth)}
        )
        summary = ingest_ui.ingest_with_progress(
            source,
            settings.model_copy(update={"ingest": limits}),
            allow_private=allow_private,
            base_url=base_url or None,
        )
        if summary is not None:
            ingest_ui.show_summary(summary)
            st.page_link("pages/chat.py", label="Ask it a question", icon=":material/forum:")
