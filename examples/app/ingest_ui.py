"""Ingesting from the browser: a progress bar while it runs, a summary when it is done.

Shared by the ingest page and by the chat page's first-run offer to index the sample site.
"""

from __future__ import annotations

import logging

import streamlit as st

import sitechat

import resources
from rendering import escape_markdown, inline_code

logger = logging.getLogger("sitechat_app.ingest")

# the progress bar splits its length between the two phases sitechat reports
_FETCH_SHARE = 0.6
# how sitechat's refusal of a private address ends: its opt-in for Python and the CLI
_LIBRARY_OPT_IN = " For an intranet or a local server, pass "
_PAGE_OPT_IN = (
    " For an intranet or a server on this machine, tick “Allow private network addresses”."
)


def _private_address_refusal(exc: sitechat.UnsafeURLError) -> str:
    """sitechat's refusal, pointing to this page's checkbox instead of an argument or flag."""
    message = str(exc)
    if _LIBRARY_OPT_IN not in message:
        return message  # refused for another reason (scheme, scope): say it as it is
    return message.split(_LIBRARY_OPT_IN, 1)[0] + _PAGE_OPT_IN


def ingest_with_progress(
    source: str,
    settings: sitechat.Settings,
    *,
    allow_private: bool = False,
    base_url: str | None = None,
) -> sitechat.IngestSummary | None:
    """Run an ingest under a progress bar; on failure show why and return None."""
    bar = st.progress(0.0, text="Starting…")
    max_pages = settings.ingest.max_pages

    def progress(phase: str, done: int, total: int | None) -> None:
        # called on this thread by sitechat.ingest: fetching (total unknown), then embedding
        if phase == "fetch":
            share = min(done / max_pages, 1.0) * _FETCH_SHARE
            bar.progress(share, text=f"Reading pages… {done} so far")
        elif phase == "embed" and total:
            share = _FETCH_SHARE + (1 - _FETCH_SHARE) * done / total
            bar.progress(min(share, 1.0), text=f"Indexing passages… {done} of {total}")

    try:
        summary = resources.run_ingest(
            source, settings, progress=progress, allow_private=allow_private, base_url=base_url
        )
    except sitechat.UnsafeURLError as exc:
        bar.empty()
        st.error(escape_markdown(_private_address_refusal(exc)), icon=":material/error:")
        return None
    except (sitechat.IngestError, sitechat.StoreError, sitechat.ConfigurationError) as exc:
        bar.empty()
        # sitechat's messages say what was wrong and what to do, and carry no secret
        st.error(escape_markdown(str(exc)), icon=":material/error:")
        return None
    except sitechat.SitechatError as exc:
        bar.empty()
        st.error(f"The ingest failed: {escape_markdown(str(exc))}", icon=":material/error:")
        return None
    except Exception:
        bar.empty()
        logger.exception("ingest failed")
        st.error("The ingest failed unexpectedly; the server log has the details.")
        return None
    bar.empty()
    return summary


def show_summary(summary: sitechat.IngestSummary) -> None:
    """What the ingest did, in a few numbers, with the pages it could not use."""
    seconds = sum(summary.seconds.values())
    st.success(
        f"Indexed {summary.pages_seen} pages in {seconds:.1f} s. The chat now answers from them.",
        icon=":material/check_circle:",
    )
    pages, changed, chunks, problems = st.columns(4)
    pages.metric("Pages", summary.pages_seen, help="Pages read and kept in the index.")
    changed.metric(
        "New or changed",
        summary.pages_added + summary.pages_updated,
        help="Unchanged pages are not embedded again.",
    )
    chunks.metric("Passages", summary.chunks_total, help="Passages the chat can cite.")
    problems.metric("Skipped or failed", summary.pages_skipped + summary.pages_failed)
    for label, rows in (("Failed", summary.failed), ("Skipped", summary.skipped)):
        if rows:
            with st.expander(f"{label}: {len(rows)} pages"):
                # a table shows text as text: nothing from the crawl is interpreted
                st.dataframe(
                    [{"page": url, "reason": reason} for url, reason in rows],
                    hide_index=True,
                    width="stretch",
                )


def offer_sample_index(settings: sitechat.Settings) -> None:
    """The first-run screen: no index yet, so offer to build one from the sample site."""
    st.title(resources.app_title())
    with st.container(border=True):
        st.subheader(":material/inventory_2: No index yet")
        st.markdown(
            f"There is nothing to answer from at {inline_code(settings.index)}. "
            "Build an index from the bundled sample site, the documentation of a made-up "
            "notes app, to try the chat with no API key, or add your own site."
        )
        if not resources.ingest_allowed():
            st.caption(
                "Ingesting from the browser is turned off here. Build the index with "
                f"{inline_code(f'sitechat ingest <URL> --index {settings.index}')}."
            )
            return
        left, right = st.columns(2)
        build = resources.SAMPLE_SITE.is_dir() and left.button(
            "Build the sample index", type="primary", icon=":material/bolt:", width="stretch"
        )
        right.page_link("pages/ingest.py", label="Add your own site", icon=":material/add_link:")
        if build and ingest_with_progress(str(resources.SAMPLE_SITE), settings):
            st.rerun()
