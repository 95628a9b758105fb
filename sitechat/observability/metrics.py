"""sitechat's metrics, as CloudWatch EMF log lines: off unless enabled.

Enable with ``SITECHAT_METRICS__ENABLED=true``; ``SITECHAT_METRICS__NAMESPACE``,
``SITECHAT_METRICS__SERVICE`` (the ``Service`` dimension) and
``SITECHAT_METRICS__DESTINATION`` (``stdout``, ``stderr`` or ``logger``) shape the lines.
Nothing leaves the machine unless the operator ships the logs (see
:mod:`sitechat.observability.emf`).

:class:`ChatMetrics` turns the end of each answer (``DoneEvent`` or ``ErrorEvent``) into
one line; :class:`IngestMetrics` does the same for an :class:`~sitechat.IngestSummary`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from pydantic import BaseModel, Field

from sitechat.events import ChatEvent, DoneEvent, ErrorEvent
from sitechat.observability.emf import EMFWriter, Metric, Unit
from sitechat.observability.logging import current_request_id

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sitechat.config import Settings
    from sitechat.ingest.pipeline import IngestSummary
    from sitechat.models import Timings

__all__ = [
    "CHAT_METRICS",
    "INGEST_METRICS",
    "ChatMetrics",
    "IngestMetrics",
    "MetricsConfig",
    "load_metrics_config",
    "metrics_stream",
    "metrics_writer",
]

_MAX_NAME = 255
_MAX_DIMENSION_VALUE = 1024

CHAT_METRICS: dict[str, Unit] = {
    "Answers": "Count",
    "ProviderErrors": "Count",
    "Throttles": "Count",
    "EmptyRetrievals": "Count",
    "Stopped": "Count",
    "RetrievalLatency": "Milliseconds",
    "TimeToFirstToken": "Milliseconds",
    "AnswerLatency": "Milliseconds",
    "TokensPerSecond": "Count/Second",
    "InputTokens": "Count",
    "OutputTokens": "Count",
}
"""Every metric a chat answer can produce, with its unit (the alarms rely on these names)."""

INGEST_METRICS: dict[str, Unit] = {
    "PagesAdded": "Count",
    "PagesUpdated": "Count",
    "PagesUnchanged": "Count",
    "PagesRemoved": "Count",
    "PagesSkipped": "Count",
    "PagesFailed": "Count",
    "ChunksEmbedded": "Count",
    "ChunksRemoved": "Count",
    "ChunksTotal": "Count",
    "IngestDuration": "Seconds",
}
"""Every metric an ingest produces, with its unit."""


class MetricsConfig(BaseModel):
    """The ``SITECHAT_METRICS__*`` section. Metrics are off by default."""

    enabled: bool = Field(default=False, description="Write EMF lines at all.")
    namespace: str = Field(
        default="Sitechat", min_length=1, max_length=_MAX_NAME, pattern=r"^[^:]+$"
    )
    service: str = Field(
        default="sitechat",
        min_length=1,
        max_length=_MAX_DIMENSION_VALUE,
        description="Value of the 'Service' dimension: one per deployment.",
    )
    destination: Literal["stdout", "stderr", "logger"] = Field(
        default="stdout",
        description="'logger' sends lines through the 'sitechat.metrics' logger, which the "
        "JSON log format keeps intact.",
    )


def load_metrics_config(settings: Settings | None = None) -> MetricsConfig:
    """Read ``SITECHAT_METRICS__*`` from the environment (and the settings' ``.env`` file)."""
    from sitechat.config import load_provider_config

    env_file: str | Path | None = settings.env_file if settings is not None else ".env"
    return load_provider_config(MetricsConfig, "metrics", env_file)


_stream_override: ContextVar[TextIO | None] = ContextVar("sitechat_metrics_stream", default=None)


@contextmanager
def metrics_stream(stream: TextIO) -> Iterator[TextIO]:
    """Within this block, metrics lines bound for ``stdout`` or ``stderr`` go to ``stream``.

    For a program whose stdout is its output: the ``sitechat`` command collects its lines
    here and writes them to stderr once its output is complete. Writers made inside the
    block (by the chats and ingests it opens) keep the stream; ``logger`` stays the logger.
    """
    token = _stream_override.set(stream)
    try:
        yield stream
    finally:
        _stream_override.reset(token)


def metrics_writer(
    settings: Settings | None = None,
    *,
    config: MetricsConfig | None = None,
    stream: TextIO | None = None,
) -> EMFWriter | None:
    """The EMF writer the configuration asks for, or None while metrics are disabled.

    ``stream`` overrides the configured destination (tests, files), as does an enclosing
    :func:`metrics_stream` for ``stdout`` and ``stderr``.
    """
    config = config or load_metrics_config(settings)
    if not config.enabled:
        return None
    logger = None
    if stream is None:
        if config.destination == "logger":
            logger = logging.getLogger("sitechat.metrics")
        else:
            stream = _stream_override.get() or (
                sys.stderr if config.destination == "stderr" else sys.stdout
            )
    return EMFWriter(config.namespace, {"Service": config.service}, stream=stream, logger=logger)


def _write_best_effort(
    writer: EMFWriter, metrics: list[Metric], properties: dict[str, object]
) -> dict[str, Any] | None:
    """Write a line; a broken log stream is logged, never raised into an answer or ingest."""
    try:
        return writer.write(metrics, properties)
    except Exception:
        logger.warning("could not write a metrics line", exc_info=True)
        return None


class ChatMetrics:
    """Turns the end of each answer into one EMF line.

    Call :meth:`record` with every event of a stream (or just the last one): ``DoneEvent``
    and ``ErrorEvent`` carry the timings and outcome of the whole answer, the others are
    ignored. Stateless, so one instance serves every concurrent chat. Every answer writes
    ``Answers``, ``ProviderErrors``, ``Throttles`` and ``EmptyRetrievals`` as 0 or 1, so the
    ``Average`` of ``ProviderErrors`` over a period is the error rate.

    :class:`~sitechat.RetrievalChatService` records its own answers: use this for a
    ``ChatService`` of your own, never around the built-in one (each answer would count twice).
    """

    def __init__(self, writer: EMFWriter | None, *, provider: str = "") -> None:
        self.writer = writer
        self.provider = provider

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, provider: str = "", stream: TextIO | None = None
    ) -> ChatMetrics:
        """Enabled when ``SITECHAT_METRICS__ENABLED`` is true, otherwise a no-op recorder.

        ``provider`` is a secret-free description such as ``llm.describe()``.
        """
        return cls(metrics_writer(settings, stream=stream), provider=provider)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def record(self, event: ChatEvent, *, request_id: str | None = None) -> dict[str, Any] | None:
        """Write the line for a finished answer; return its document (None if none written)."""
        if self.writer is None or not isinstance(event, (DoneEvent, ErrorEvent)):
            return None
        failed = isinstance(event, ErrorEvent)
        counts = {
            "Answers": 1,
            "ProviderErrors": int(failed),
            "Throttles": int(
                isinstance(event, ErrorEvent) and event.error_type == "RateLimitError"
            ),
            "EmptyRetrievals": int(isinstance(event, DoneEvent) and not event.covered),
            "Stopped": 0,
        }
        metrics = [Metric(name, value, CHAT_METRICS[name]) for name, value in counts.items()]
        metrics += _timing_metrics(event.timings)
        if isinstance(event, DoneEvent) and event.usage is not None:
            metrics.append(Metric("InputTokens", event.usage.input_tokens, "Count"))
            metrics.append(Metric("OutputTokens", event.usage.output_tokens, "Count"))
        properties: dict[str, object] = {"Event": "answer"}
        if isinstance(event, ErrorEvent):
            properties["Outcome"] = "error"
            properties["ErrorType"] = event.error_type
        else:
            properties["Outcome"] = "answered" if event.covered else "not_covered"
            properties["Cited"] = len(event.cited)
        return self._write(self.writer, metrics, properties, request_id)

    def record_stopped(
        self, timings: Timings, *, request_id: str | None = None
    ) -> dict[str, Any] | None:
        """Write the line for an answer the reader stopped while it streamed (the app's
        Stop button, a closed connection): ``Stopped`` 1, ``Outcome`` ``"stopped"``."""
        if self.writer is None:
            return None
        counts = {
            "Answers": 1,
            "ProviderErrors": 0,
            "Throttles": 0,
            "EmptyRetrievals": 0,
            "Stopped": 1,
        }
        metrics = [Metric(name, value, CHAT_METRICS[name]) for name, value in counts.items()]
        metrics += _timing_metrics(timings)
        properties: dict[str, object] = {"Event": "answer", "Outcome": "stopped"}
        return self._write(self.writer, metrics, properties, request_id)

    def _write(
        self,
        writer: EMFWriter,
        metrics: list[Metric],
        properties: dict[str, object],
        request_id: str | None,
    ) -> dict[str, Any] | None:
        if self.provider:
            properties["Provider"] = self.provider
        rid = request_id or current_request_id()
        if rid:
            properties["RequestId"] = rid
        return _write_best_effort(writer, metrics, properties)


def _timing_metrics(timings: Timings | None) -> list[Metric]:
    if timings is None:
        return []
    out = [
        Metric("RetrievalLatency", timings.retrieval_ms, "Milliseconds"),
        Metric("AnswerLatency", timings.total_ms, "Milliseconds"),
    ]
    if timings.first_token_ms is not None:
        out.append(Metric("TimeToFirstToken", timings.first_token_ms, "Milliseconds"))
    if timings.tokens_per_second is not None:
        out.append(Metric("TokensPerSecond", timings.tokens_per_second, "Count/Second"))
    return out


class IngestMetrics:
    """Turns an :class:`~sitechat.IngestSummary` into one EMF line of page and chunk counts."""

    def __init__(self, writer: EMFWriter | None) -> None:
        self.writer = writer

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, stream: TextIO | None = None
    ) -> IngestMetrics:
        """Enabled when ``SITECHAT_METRICS__ENABLED`` is true, otherwise a no-op recorder."""
        return cls(metrics_writer(settings, stream=stream))

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def record(
        self, summary: IngestSummary, *, request_id: str | None = None
    ) -> dict[str, Any] | None:
        """Write the line for a finished ingest; return its document (None when disabled)."""
        if self.writer is None:
            return None
        values = {
            "PagesAdded": summary.pages_added,
            "PagesUpdated": summary.pages_updated,
            "PagesUnchanged": summary.pages_unchanged,
            "PagesRemoved": summary.pages_removed,
            "PagesSkipped": summary.pages_skipped,
            "PagesFailed": summary.pages_failed,
            "ChunksEmbedded": summary.chunks_added,
            "ChunksRemoved": summary.chunks_removed,
            "ChunksTotal": summary.chunks_total,
            "IngestDuration": sum(summary.seconds.values()),
        }
        metrics = [Metric(name, value, INGEST_METRICS[name]) for name, value in values.items()]
        properties: dict[str, object] = {"Event": "ingest", "PhaseSeconds": dict(summary.seconds)}
        rid = request_id or current_request_id()
        if rid:
            properties["RequestId"] = rid
        return _write_best_effort(self.writer, metrics, properties)
