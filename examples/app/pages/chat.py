"""The chat page: ask about the site, watch the answer stream in, follow its sources."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

import sitechat
from sitechat.observability import request_context

import ingest_ui
import resources
from rendering import (
    Turn,
    conversation_history,
    escape_markdown,
    friendly_error,
    inline_code,
    sanitize_markdown,
    shared_title_suffix,
    sources_markdown,
)

logger = logging.getLogger("sitechat_app.chat")

RENDER_EVERY = 0.05  # seconds between redraws of a streaming answer
CURSOR = " ▌"
AVATARS = {"user": ":material/person:", "assistant": ":material/forum:"}

turns: list[Turn] = st.session_state.setdefault("turns", [])


# --- actions (button callbacks run before the page is drawn again) -----------------------
def ask(question: str) -> None:
    st.session_state["pending_question"] = question


def clear_chat() -> None:
    turns.clear()


def regenerate() -> None:
    """Forget the last answer and ask its question again."""
    while turns and turns[-1].role == "assistant":
        turns.pop()
    if turns and turns[-1].role == "user":
        ask(turns.pop().text)


# --- how a turn looks ------------------------------------------------------------------
def show_sources(turn: Turn) -> None:
    if not turn.sources:
        return
    site = shared_title_suffix(turn.sources)
    cited = [s for s in turn.sources if s.n in turn.cited]
    others = [s for s in turn.sources if s.n not in turn.cited]
    if cited:
        st.caption("**Sources**  \n" + sources_markdown(cited, site))
        if others:
            more = f"{len(others)} more passage{'s' if len(others) > 1 else ''}"
            with st.expander(f"{more} found, not cited"):
                st.caption(sources_markdown(others, site))
    elif turn.covered:
        st.caption("**Passages found**  \n" + sources_markdown(turn.sources, site))


def show_answer_details(turn: Turn, *, last: bool) -> None:
    """Everything under the answer text: notices, errors, sources, actions."""
    if turn.stopped:
        st.caption(":material/stop_circle: Stopped before the answer finished.")
    if not turn.covered:
        st.badge("Not covered by this site", icon=":material/search_off:", color="orange")
    if turn.error:
        st.error(turn.error, icon=":material/error:")
        if turn.detail or turn.request_id:
            # the detail is sitechat's own message: secret-free, but technical
            with st.expander("Details"):
                notes = [escape_markdown(turn.detail)] if turn.detail else []
                if turn.request_id:
                    notes.append(f"Reference for the server log: {inline_code(turn.request_id)}")
                st.caption("  \n".join(notes))
    show_sources(turn)
    if last and (turn.error or turn.stopped or turn.finished):
        st.button(
            "Regenerate",
            icon=":material/refresh:",
            type="tertiary",
            on_click=regenerate,
            key="regenerate",
        )


def show_turn(turn: Turn, *, last: bool) -> None:
    with st.chat_message(turn.role, avatar=AVATARS[turn.role]):
        if turn.role == "user":
            st.markdown(sanitize_markdown(turn.text))
            return
        if turn.text:
            st.markdown(sanitize_markdown(turn.text, sources=turn.sources))
        show_answer_details(turn, last=last)


# --- answering ---------------------------------------------------------------------------
def answer(chat: sitechat.SiteChat, question: str) -> None:
    """Stream the answer to ``question`` into the page, recording it as it arrives."""
    history = conversation_history(turns)
    turns.append(Turn("user", question))
    show_turn(turns[-1], last=False)
    # the turn is stored before streaming starts, so pressing stop keeps what has arrived
    turn = Turn("assistant")
    turns.append(turn)
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        status, body = st.empty(), st.empty()
        status.status("Searching the site…")
        with request_context() as request_id:
            turn.request_id = request_id
            try:
                stream_into(turn, chat.stream(question, history=history), status, body)
            except sitechat.InvalidInputError as exc:
                turn.error = str(exc)  # says what to change, e.g. the message is too long
            except sitechat.SitechatError as exc:
                # e.g. the embedder or the index failed while searching
                logger.warning("answer failed: %s", exc, extra={"error_type": type(exc).__name__})
                turn.error, turn.detail = friendly_error(type(exc).__name__), str(exc)
            except Exception:
                # never show a traceback: log it under the reference the visitor sees
                logger.exception("answer failed")
                turn.error = "Something went wrong on our side. Please try again."
            finally:
                turn.stopped = not turn.finished and not turn.error
                if turn.stopped:
                    logger.info("answer stopped by the visitor")
        status.empty()
        body.markdown(sanitize_markdown(turn.text, sources=turn.sources))
        show_answer_details(turn, last=True)


def stream_into(
    turn: Turn, events: Iterator[sitechat.ChatEvent], status: DeltaGenerator, body: DeltaGenerator
) -> None:
    """Consume the event stream: sources, then text redrawn as it grows, then the outcome.

    The whole answer is sanitised on every redraw (rather than each piece on its own),
    because a link or a code block can be split across pieces.
    """
    last_drawn = 0.0
    with contextlib.closing(events):  # stopping mid-answer cancels the provider call
        for event in events:
            if isinstance(event, sitechat.SourcesEvent):
                turn.sources = event.sources
                if event.sources:
                    status.status(f"Writing an answer from {len(event.sources)} passages…")
            elif isinstance(event, sitechat.TokenEvent):
                if not turn.text:
                    status.empty()
                turn.text += event.text
                if time.monotonic() - last_drawn >= RENDER_EVERY:
                    body.markdown(sanitize_markdown(turn.text, sources=turn.sources) + CURSOR)
                    last_drawn = time.monotonic()
            elif isinstance(event, sitechat.DoneEvent):
                turn.text, turn.cited, turn.covered = event.answer, event.cited, event.covered
                turn.finished = True
            elif isinstance(event, sitechat.ErrorEvent):
                # the message is safe to show (no secret, no traceback); keep the partial text
                turn.text = event.partial
                turn.error, turn.detail = friendly_error(event.error_type), event.message
                turn.finished = True
                logger.warning(
                    "answer failed: %s",
                    event.message,
                    extra={"error_type": event.error_type},
                )


# --- the page ----------------------------------------------------------------------------
settings = resources.page_settings()

with st.sidebar:
    st.subheader("Answering from")
    st.caption(f":material/database: {inline_code(settings.index)}")
    model_slot = st.empty()  # filled in once the chat (and so its model) is known
    st.divider()
    top_k = st.slider(
        "Sources per answer",
        min_value=1,
        max_value=10,
        value=settings.retrieval.top_k,
        help="How many passages are retrieved and given to the model for each question.",
    )
    st.button("New chat", icon=":material/add_comment:", on_click=clear_chat, width="stretch")

try:
    chat = resources.get_chat(settings.index, top_k, resources.index_version(settings.index))
except sitechat.IndexNotFoundError:
    ingest_ui.offer_sample_index(settings)
    st.stop()
except sitechat.SitechatError as exc:
    resources.cannot_start(exc)  # e.g. an unknown provider, a missing key

model_slot.caption(
    f":material/psychology: {escape_markdown(resources.describe_llm(chat))}  \n"
    f":material/scatter_plot: embeddings: {escape_markdown(resources.describe_embedder(chat))}"
)

st.title(resources.app_title())

# st.chat_input is pinned to the bottom of the page wherever it is called; reading it first
# tells the history below whether a new answer is about to follow it
question = st.chat_input(
    "Ask a question about the site",
    max_chars=settings.chat.max_message_chars,
    submit_mode="stop",  # the send button turns into a stop button while answering
) or st.session_state.pop("pending_question", None)

for i, past in enumerate(turns):
    show_turn(past, last=not question and i == len(turns) - 1)

if question:
    answer(chat, question)
elif not turns:
    st.markdown(
        "Ask anything about the site. Every answer comes from its own pages, "
        "with numbered sources you can follow."
    )
    examples = resources.suggestions()
    if examples:
        st.caption("Try one of these")
        columns = st.columns(len(examples))
        for column, example in zip(columns, examples, strict=True):
            column.button(example, on_click=ask, args=(example,), width="stretch")
