"""What the pages share: settings, the chat objects (one per process), and ingesting.

A :class:`sitechat.SiteChat` holds the open index and an event loop thread, so it is built
once per process with ``st.cache_resource`` and shared by every browser session; it is safe
to use from several sessions at once. What belongs to one visitor (the conversation) lives
in ``st.session_state`` instead, and is passed to each call as ``history=``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import streamlit as st

import sitechat
from sitechat.observability import configure_logging, load_logging_config

from rendering import escape_markdown

logger = logging.getLogger("sitechat_app")

APP_DIR = Path(__file__).resolve().parent
SAMPLE_SITE = Path(os.environ.get("SITECHAT_APP_SAMPLE_SITE", APP_DIR.parent / "sample_site"))


def env_flag(name: str, default: bool) -> bool:
    """Read a yes/no environment variable (``1``, ``true``, ``yes``, ``on`` mean yes)."""
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def app_title() -> str:
    return os.environ.get("SITECHAT_APP_TITLE", "Ask the docs")


def suggestions() -> list[str]:
    """Example questions offered on an empty chat: ``SITECHAT_APP_SUGGESTIONS``, ``|``-separated."""
    raw = os.environ.get("SITECHAT_APP_SUGGESTIONS", "")
    return [s.strip() for s in raw.split("|") if s.strip()][:4]


def ingest_allowed() -> bool:
    """Whether visitors may add sites; turn it off on a public deployment."""
    return env_flag("SITECHAT_APP_ALLOW_INGEST", True)


@st.cache_resource(show_spinner=False)
def setup_logging() -> None:
    """Install sitechat's log handler once per process (JSON with ``SITECHAT_LOG__FORMAT``)."""
    configure_logging(load_logging_config())


def load_settings() -> sitechat.Settings:
    """sitechat's settings from the environment and ``.env`` (cheap; read on every run)."""
    return sitechat.Settings.load()


def cannot_start(exc: sitechat.SitechatError) -> NoReturn:
    """Show why the app cannot run and stop this run of the page.

    For configuration problems: sitechat's message names the variable to fix, never a secret.
    """
    st.error(f"sitechat could not start: {escape_markdown(str(exc))}", icon=":material/error:")
    st.stop()


def page_settings() -> sitechat.Settings:
    """The settings a page runs with; a bad ``SITECHAT_*`` value is shown, and stops the page."""
    try:
        return load_settings()
    except sitechat.SitechatError as exc:
        cannot_start(exc)


@st.cache_resource(show_spinner=False)
def _index_versions() -> dict[str, int]:
    # bumped after an ingest so that the next run opens the index afresh
    return {}


def index_version(index: str) -> int:
    return _index_versions().get(index, 0)


def index_changed(index: str) -> None:
    """Make every session reopen ``index`` on its next run (after an ingest wrote to it)."""
    versions = _index_versions()
    versions[index] = versions.get(index, 0) + 1


def _close_chat(chat: sitechat.SiteChat) -> None:
    try:
        chat.close()
    except Exception:  # a chat being dropped must never break the page that dropped it
        logger.warning("closing a cached chat failed", exc_info=True)


class _BrowserSessionHistory(sitechat.HistoryStore):
    """The app keeps each conversation in the visitor's session and passes it as
    ``history=``; this store therefore keeps nothing, so the shared chat holds no memory
    of anyone's conversation."""

    async def get(self, session_id: str) -> list[sitechat.ChatMessage]:
        return []

    async def append(self, session_id: str, *messages: sitechat.ChatMessage) -> None:
        return None

    async def clear(self, session_id: str) -> None:
        return None


@st.cache_resource(show_spinner="Opening the index…", max_entries=8, on_release=_close_chat)
def get_chat(index: str, top_k: int, version: int) -> sitechat.SiteChat:
    """The chat for ``index`` with ``top_k`` sources, shared by all sessions.

    ``version`` is part of the cache key only: a new value after an ingest opens a fresh
    chat. Raises ``sitechat.IndexNotFoundError`` when there is no index yet (not cached).
    """
    settings = load_settings()
    settings = settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"top_k": top_k})}
    )
    return sitechat.SiteChat(index, settings=settings, history_store=_BrowserSessionHistory())


def describe_llm(chat: sitechat.SiteChat) -> str:
    """``provider/model`` of the chat's LLM, e.g. ``openai/gpt-4o-mini``."""
    service = chat.service
    if isinstance(service, sitechat.RetrievalChatService):
        return service.llm.describe()
    return type(service).__name__


def describe_embedder(chat: sitechat.SiteChat) -> str:
    """The embedder the index was built with, e.g. ``static:minilm-v1:256``.

    Reading an index adopts the embedder that built it, whatever the settings name, so
    this (not ``SITECHAT_EMBEDDINGS__PROVIDER``) is the one that embeds the questions.
    """
    service = chat.service
    if isinstance(service, sitechat.RetrievalChatService):
        return service.retriever.store.embedder.name
    return chat.settings.embeddings.provider


Progress = Callable[[str, int, int | None], None]


def run_ingest(
    source: str,
    settings: sitechat.Settings,
    *,
    progress: Progress | None = None,
    allow_private: bool = False,
    base_url: str | None = None,
) -> sitechat.IngestSummary:
    """Ingest ``source`` into ``settings.index`` and have every session reopen it.

    ``sitechat.ingest`` is a coroutine; a Streamlit script runs in a thread with no event
    loop of its own, so ``asyncio.run`` is the plain way to call it, and ``progress`` is
    then called on this same thread, where it may update Streamlit elements.
    """
    summary = asyncio.run(
        sitechat.ingest(
            source,
            settings=settings,
            allow_private=allow_private,
            base_url=base_url or None,
            progress=progress,
        )
    )
    index_changed(settings.index)
    logger.info(
        "ingest finished",
        extra={"source": source, "index": settings.index, "summary": summary.to_dict()},
    )
    return summary
