"""Structured logs: one JSON object per line, each carrying the request id it belongs to.

Log collectors (CloudWatch Logs, Loki, Datadog) index JSON fields, so an operator can pull
every line of one answer with ``request_id = "…"``. The id lives in a context variable, set
around a unit of work with :func:`request_context`; every record logged inside it, from any
module, gets the id without the id being passed around.

Configured by ``SITECHAT_LOG__FORMAT`` (``text`` or ``json``) and ``SITECHAT_LOG__LEVEL``
(read with :func:`load_logging_config`); :func:`configure_logging` installs the handler.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from pydantic import BaseModel, Field, field_validator

from sitechat._redact import redact

if TYPE_CHECKING:
    from sitechat.config import Settings

__all__ = [
    "EMF_RECORD_ATTRIBUTE",
    "JsonFormatter",
    "LoggingConfig",
    "RequestIdFilter",
    "configure_logging",
    "current_request_id",
    "json_line",
    "load_logging_config",
    "new_request_id",
    "request_context",
]

EMF_RECORD_ATTRIBUTE = "emf"
"""A log record carrying a dict under this attribute is an EMF document: the JSON formatter
writes it at the top level of the line, where CloudWatch looks for ``_aws``."""

_request_id: ContextVar[str | None] = ContextVar("sitechat_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "request_id"}
)
_HANDLER_MARK = "_sitechat_handler"


def new_request_id() -> str:
    """A fresh, random request id (16 hex characters: short enough to read out to support)."""
    return uuid.uuid4().hex[:16]


def current_request_id() -> str | None:
    """The request id of the work in progress, if one was set with :func:`request_context`."""
    return _request_id.get()


@contextmanager
def request_context(request_id: str | None = None) -> Iterator[str]:
    """Tag every log line (and metric) emitted inside the block with a request id.

    >>> with request_context() as rid:
    ...     logger.info("answering")   # carries request_id=rid

    The id follows ``await``, tasks created inside the block, and coroutines handed to
    another thread's loop with ``asyncio.run_coroutine_threadsafe`` (so calls made through
    :class:`~sitechat.SiteChat` carry it); a plain thread started inside does not see it.
    """
    rid = request_id or new_request_id()
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (or ``"-"``) so text formats can print ``%(request_id)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or "-"
        return True


# JSON allows these raw inside strings, but many log tools treat them as line breaks
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(document: Mapping[str, Any]) -> str:
    """``document`` as compact JSON guaranteed to stay on one line for any log tool."""
    text = json.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))
    return text.translate(_LINE_BREAKS)


def _utc_timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, request id, extras.

    Values passed with ``extra=`` become fields; anything not JSON-serialisable is written
    with ``str()`` (a pydantic ``SecretStr`` therefore prints as stars, never its value).
    A record with an ``emf`` attribute (see :data:`EMF_RECORD_ATTRIBUTE`) is merged into
    that document so CloudWatch can still extract its metrics.

    Secrets are masked whichever library logged them: httpx logs each request's full URL,
    and a gateway password in ``SITECHAT_OPENAI__BASE_URL`` would otherwise reach the log
    collector. Each text is masked before it is encoded, where JSON would escape the quotes
    of a message quoting JSON (``{"password": "…"}``) out of the patterns' sight, and the
    finished line again, for a name and its value that only meet there (``extra=``).
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        request_id = request_id if request_id and request_id != "-" else _request_id.get()
        if request_id:
            line["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and key != EMF_RECORD_ATTRIBUTE:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        emf = getattr(record, EMF_RECORD_ATTRIBUTE, None)
        if isinstance(emf, Mapping):
            # the EMF members win: CloudWatch reads metric values from the top level
            line = {**line, **emf}
        return redact(json_line(_masked(line)))


def _masked(value: Any) -> Any:
    """``value`` with every text in it redacted, through mappings and sequences; anything
    else that JSON cannot hold is written with ``str()``, as ``json_line`` would."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


class LoggingConfig(BaseModel):
    """The ``SITECHAT_LOG__*`` section."""

    format: Literal["text", "json"] = Field(
        default="text", description="'json' for log collectors, 'text' for people."
    )
    level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        name = value.strip().upper()
        if name not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return name


def load_logging_config(settings: Settings | None = None) -> LoggingConfig:
    """Read ``SITECHAT_LOG__*`` from the environment (and the settings' ``.env`` file)."""
    from sitechat.config import load_provider_config

    env_file: str | Path | None = settings.env_file if settings is not None else ".env"
    return load_provider_config(LoggingConfig, "log", env_file)


_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


class _TextFormatter(logging.Formatter):
    """The text format, with secrets masked like the JSON one's."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(
    config: LoggingConfig | None = None,
    *,
    stream: TextIO | None = None,
    logger: logging.Logger | None = None,
) -> logging.Handler:
    """Send logs to ``stream`` (stderr) in the configured format, with request ids and
    secrets masked (keys, tokens, ``user:password@`` in URLs, from any library).

    Installs one handler on ``logger`` (the root logger by default) and sets its level;
    calling it again replaces that handler instead of adding a second one, so an app may
    call it on every start-up path. Returns the handler.
    """
    config = config or load_logging_config()
    target = logger or logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if config.format == "json" else _TextFormatter(_TEXT_FORMAT)
    )
    handler.addFilter(RequestIdFilter())
    setattr(handler, _HANDLER_MARK, True)
    for old in [h for h in target.handlers if getattr(h, _HANDLER_MARK, False)]:
        target.removeHandler(old)
    target.addHandler(handler)
    target.setLevel(config.level)
    return handler
