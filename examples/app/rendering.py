"""Turn untrusted text (crawled pages, model answers) into Markdown that is safe to render.

Streamlit already refuses raw HTML unless ``unsafe_allow_html=True`` (never used here), but
an answer is written by a model that has read arbitrary web pages, and a hostile page can
steer it. So, before anything reaches ``st.markdown``:

- ``<`` outside code is escaped: no tag, comment or autolink survives, whatever the
  renderer's settings;
- images become their alt text: an image loads without a click, so its URL could carry
  the conversation to a third party;
- links keep their target only when it is ``http(s)``; anything else (``javascript:``,
  ``data:``, ``file:``) is reduced to its text;
- ``$`` is escaped so prices are not typeset as LaTeX, and Streamlit's ``:color[...]``
  directives are disarmed;
- ``[n]`` citations become links to the numbered source, when that source is on the web.

Code spans and fenced blocks are left as they are: Markdown shows their content verbatim.
Everything here is a pure function of its input, so it is tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from urllib.parse import quote, unquote, urlsplit

from sitechat import ChatMessage, Source
from sitechat.chat.prompts import CITATION_RE, cited_numbers

__all__ = [
    "Turn",
    "conversation_history",
    "escape_markdown",
    "friendly_error",
    "inline_code",
    "is_web_url",
    "sanitize_markdown",
    "shared_title_suffix",
    "source_label",
    "sources_markdown",
]


@dataclass
class Turn:
    """One message of the conversation as the page shows it (kept in ``st.session_state``).

    An assistant turn is filled in as its events arrive, so a stopped answer keeps the text
    that had streamed; ``error`` holds a message for people, ``detail`` the library's.
    """

    role: str
    text: str = ""
    sources: tuple[Source, ...] = ()
    cited: tuple[int, ...] = ()
    covered: bool = True
    error: str | None = None
    detail: str | None = None
    stopped: bool = False
    finished: bool = False
    request_id: str = ""

    @property
    def ok(self) -> bool:
        return self.role == "user" or (self.finished and not self.error and not self.stopped)


def conversation_history(turns: Sequence[Turn]) -> list[ChatMessage]:
    """The question/answer pairs that completed, for the next question's context.

    A failed or stopped answer is left out together with its question, so the model never
    sees half an exchange.
    """
    history: list[ChatMessage] = []
    for question, answer in pairwise(turns):
        if question.role == "user" and answer.role == "assistant" and answer.ok:
            history.append(ChatMessage("user", question.text))
            history.append(ChatMessage("assistant", answer.text))
    return history


def is_web_url(url: str) -> bool:
    """True for an absolute ``http``/``https`` URL with a host and nothing odd in it."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ch in "<>\"'`" for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$<>:&])")


def escape_markdown(text: str) -> str:
    """Plain text (a page title, a file path) that Markdown shows exactly as written."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(text.split()))


def inline_code(text: str) -> str:
    """``text`` as a Markdown code span, shown verbatim whatever backticks it contains."""
    flat = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {flat} {fence}" if longest else f"{fence}{flat}{fence}"


# a fence opens with 3+ backticks or tildes at the start of a line and closes with the same
_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
# a backslash-escaped backtick opens nothing: treating it as code would skip sanitising
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?:.|\n)*?(?<!`)\1(?!`)")
_LINK_TEXT = r"((?:[^\[\]\n]|\[[^\[\]\n]*\])*)"
_IMAGE = re.compile(r"!\[" + _LINK_TEXT + r"\]\([^)\n]*\)")
# a link target may hold one level of balanced parentheses, as CommonMark allows
_LINK = re.compile(
    r"\[" + _LINK_TEXT + r"\]\(\s*<?((?:[^\s()<>]|\([^\s()<>]*\))*)>?(?:\s+\"[^\"\n]*\")?\s*\)"
)
_REFERENCE_DEFINITION = re.compile(r"^[ ]{0,3}\[[^\]\n]+\]:[ \t]*<?([^\s>]*)>?.*$", re.MULTILINE)
_DANGLING_LINK = re.compile(r"\]\((?!\s*<?https?://)", re.IGNORECASE)
_STREAMLIT_DIRECTIVE = re.compile(r":([A-Za-z][\w-]*)\[")
# a run of citations ([n], [1, 2], [1-3], or several side by side: [1][2]), unless it is
# the text or label of a Markdown link
_CITATIONS = re.compile(r"(?<![\]\\])(?:" + CITATION_RE.pattern + r")+(?![(:])")


def _split_code(text: str) -> list[tuple[bool, str]]:
    """Cut ``text`` into (is_code, piece); an unclosed fence runs to the end, as it renders."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(text):
        opening = _FENCE.search(text, pos)
        if opening is None:
            break
        marker = opening.group(1)
        closing = re.compile(
            r"^[ ]{0,3}" + re.escape(marker[0]) + "{" + str(len(marker)) + r",}[ \t]*$",
            re.MULTILINE,
        ).search(text, opening.end())
        end = closing.end() if closing else len(text)
        pieces.extend(_split_spans(text[pos : opening.start()]))
        pieces.append((True, text[opening.start() : end]))
        pos = end
    pieces.extend(_split_spans(text[pos:]))
    return pieces


def _split_spans(text: str) -> list[tuple[bool, str]]:
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for span in _CODE_SPAN.finditer(text):
        pieces.append((False, text[pos : span.start()]))
        pieces.append((True, span.group(0)))
        pos = span.end()
    pieces.append((False, text[pos:]))
    return [p for p in pieces if p[1]]


def _link_target(url: str) -> str:
    # percent-encode what could end the Markdown link early (parentheses); keep the rest
    return quote(url, safe=":/?#[]@!$&'*+,;=%~-._")


def _keep_web_link(match: re.Match[str]) -> str:
    text, url = match.group(1), match.group(2)
    return f"[{text}]({_link_target(url)})" if is_web_url(url) else text


def _drop_unsafe_definition(match: re.Match[str]) -> str:
    return match.group(0) if is_web_url(match.group(1)) else ""


def _sanitize_prose(text: str, citation_links: Mapping[int, str]) -> str:
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = text.replace("![", "!\\[")  # whatever image syntax the pattern above missed
    text = _LINK.sub(_keep_web_link, text)
    text = _REFERENCE_DEFINITION.sub(_drop_unsafe_definition, text)
    text = _DANGLING_LINK.sub("]\\(", text)  # a link the pattern missed cannot form
    text = text.replace("<", "&lt;").replace("$", "\\$")
    text = _STREAMLIT_DIRECTIVE.sub(r":\1\\[", text)

    def cite(match: re.Match[str]) -> str:
        numbers = cited_numbers(match.group(1), 999)
        if not any(n in citation_links for n in numbers) or len(numbers) > 20:
            return match.group(0)  # nothing to link, or not a plausible citation
        return "".join(
            f"[\\[{n}\\]]({_link_target(url)})" if (url := citation_links.get(n)) else f"\\[{n}\\]"
            for n in numbers
        )

    def cite_run(match: re.Match[str]) -> str:
        return CITATION_RE.sub(cite, match.group(0))

    return _CITATIONS.sub(cite_run, text) if citation_links else text


def sanitize_markdown(text: str, *, sources: Iterable[Source] = ()) -> str:
    """``text`` made safe to give ``st.markdown``; ``[n]`` links to source ``n`` if on the web.

    Run it on the whole text each time it is shown, not on streamed pieces: a link or a
    code fence can span several pieces.
    """
    citation_links = {s.n: s.url for s in sources if is_web_url(s.url)}
    return "".join(
        piece if is_code else _sanitize_prose(piece, citation_links)
        for is_code, piece in _split_code(text)
    )


_SITE_SUFFIX = re.compile(r"\s+[—–|-]\s+[^—–|]+$")


def shared_title_suffix(sources: Sequence[Source]) -> str:
    """The `` — Site name`` ending every title shares, if there are several titles."""
    endings = {m.group(0) if (m := _SITE_SUFFIX.search(s.title)) else "" for s in sources}
    return endings.pop() if len(sources) > 1 and len(endings) == 1 else ""


def source_label(source: Source, drop_suffix: str = "") -> str:
    """The title of a source and, when it points into the page, the section's heading."""
    title = source.title
    if drop_suffix and title.endswith(drop_suffix) and len(title) > len(drop_suffix):
        title = title[: -len(drop_suffix)]
    label = title or source.url
    section = source.heading.split(" › ")[-1].strip() if source.heading else ""
    if section and section not in label:
        label = f"{label} › {section}"
    return label


def _file_name(url: str) -> str:
    """A local page's file name (and section), shown instead of a link."""
    parts = urlsplit(url)
    name = unquote(parts.path).rstrip("/").rsplit("/", 1)[-1]
    return name + (f"#{parts.fragment}" if parts.fragment else "")


def sources_markdown(sources: Sequence[Source], drop_suffix: str | None = None) -> str:
    """One line per source: ``[n]`` and its title, linked only when the URL is http(s).

    Sources from a local folder (``file://``) are shown as plain text with their file name:
    a browser would not open them, and the app must never link to anything but the web.
    The site name every title ends with (``drop_suffix``, found among ``sources`` when
    not given) is left out: repeated on every line it only hides the page names.
    """
    suffix = shared_title_suffix(sources) if drop_suffix is None else drop_suffix
    lines = []
    for source in sources:
        label = escape_markdown(source_label(source, suffix))
        if is_web_url(source.url):
            lines.append(f"**\\[{source.n}\\]** [{label}]({_link_target(source.url)})")
        else:
            where = escape_markdown(_file_name(source.url))
            lines.append(f"**\\[{source.n}\\]** {label} · {where}")
    return "  \n".join(lines)


_FRIENDLY: Mapping[str, str] = {
    "RateLimitError": "The AI provider is busy right now. Wait a few seconds and try again.",
    "ProviderTimeoutError": "The AI provider took too long to answer. Please try again.",
    "ServiceUnavailableError": "The AI provider is unavailable at the moment. Try again soon.",
    "StreamInterruptedError": "The answer was cut off on its way here. Try again.",
    "AuthenticationError": "The AI provider rejected this app's credentials. "
    "An administrator needs to check the configured key.",
    "PermissionDeniedError": "This app is not allowed to use the configured model. "
    "An administrator needs to grant access.",
    "ModelNotFoundError": "The configured model is not available. "
    "An administrator needs to check the model setting.",
    "ContextLengthError": "The question and its sources are too long for the model. "
    "Try a shorter question, or start a new chat.",
    "BadRequestError": "The AI provider refused the request. Try rephrasing the question.",
}


def friendly_error(error_type: str) -> str:
    """A sentence for people about a failed answer, chosen by the sitechat error class."""
    return _FRIENDLY.get(error_type, "The answer failed. Please try again in a moment.")
