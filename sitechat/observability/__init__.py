"""Logs and metrics for running sitechat in production; nothing here sends data anywhere.

- :mod:`~sitechat.observability.logging`: JSON log lines with a request id
  (``SITECHAT_LOG__FORMAT=json``), set per unit of work with :func:`request_context`.
- :mod:`~sitechat.observability.metrics`: CloudWatch Embedded Metric Format lines
  (``SITECHAT_METRICS__ENABLED=true``) for answers (:class:`ChatMetrics`) and ingests
  (:class:`IngestMetrics`).
- :mod:`~sitechat.observability.emf`: the EMF writer, and :func:`emf_problems`, which checks
  a document against the EMF specification.
"""

from __future__ import annotations

from sitechat.observability.emf import EMFWriter, Metric, emf_problems, validate_emf
from sitechat.observability.logging import (
    JsonFormatter,
    LoggingConfig,
    RequestIdFilter,
    configure_logging,
    current_request_id,
    load_logging_config,
    new_request_id,
    request_context,
)
from sitechat.observability.metrics import (
    CHAT_METRICS,
    INGEST_METRICS,
    ChatMetrics,
    IngestMetrics,
    MetricsConfig,
    load_metrics_config,
    metrics_stream,
    metrics_writer,
)

__all__ = [
    "CHAT_METRICS",
    "INGEST_METRICS",
    "ChatMetrics",
    "EMFWriter",
    "IngestMetrics",
    "JsonFormatter",
    "LoggingConfig",
    "Metric",
    "MetricsConfig",
    "RequestIdFilter",
    "configure_logging",
    "current_request_id",
    "emf_problems",
    "load_logging_config",
    "load_metrics_config",
    "metrics_stream",
    "metrics_writer",
    "new_request_id",
    "request_context",
    "validate_emf",
]
