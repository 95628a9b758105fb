"""EMF metric lines and JSON logs: valid structure, off by default, request ids carried."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitechat import (
    ChatEvent,
    ChatService,
    DoneEvent,
    ErrorEvent,
    IngestSummary,
    SourcesEvent,
    Timings,
    TokenEvent,
    Usage,
)
from sitechat.chat.base import HistoryLike
from sitechat.errors import ConfigurationError, InvalidInputError
from sitechat.observability import (
    CHAT_METRICS,
    INGEST_METRICS,
    ChatMetrics,
    EMFWriter,
    IngestMetrics,
    JsonFormatter,
    LoggingConfig,
    Metric,
    configure_logging,
    current_request_id,
    emf_problems,
    load_metrics_config,
    metrics_writer,
    request_context,
    validate_emf,
)

DONE = DoneEvent(
    answer="Open Settings › Account [1].",
    cited=(1,),
    timings=Timings(retrieval_ms=12.5, first_token_ms=80.25, total_ms=300.0, tokens_per_second=42),
    usage=Usage(input_tokens=900, output_tokens=40),
)


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return lines_of_text(stream.getvalue())


def lines_of_text(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def assert_metric_units(doc: dict[str, Any], expected: dict[str, str]) -> None:
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    declared = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert declared == {name: expected[name] for name in declared}
    for name in declared:
        assert isinstance(doc[name], (int, float))


def test_metrics_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no SITECHAT_METRICS__* set, nothing is recorded and nothing is written."""
    assert load_metrics_config().enabled is False
    assert metrics_writer() is None
    chat = ChatMetrics.from_settings()
    assert not chat.enabled
    assert chat.record(DONE) is None
    assert IngestMetrics.from_settings().record(IngestSummary()) is None


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SITECHAT_METRICS__ENABLED/NAMESPACE/SERVICE turn metrics on and shape the lines."""
    monkeypatch.setenv("SITECHAT_METRICS__ENABLED", "true")
    monkeypatch.setenv("SITECHAT_METRICS__NAMESPACE", "Docs/Chat")
    monkeypatch.setenv("SITECHAT_METRICS__SERVICE", "docs-prod")
    out = io.StringIO()
    doc = ChatMetrics.from_settings(stream=out).record(DONE)
    assert doc is not None
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Docs/Chat"
    assert doc["Service"] == "docs-prod"
    assert lines_of(out) == [doc]


def test_a_bad_metrics_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An impossible namespace fails at start-up, naming its environment variable."""
    monkeypatch.setenv("SITECHAT_METRICS__NAMESPACE", "bad:namespace")
    with pytest.raises(ConfigurationError, match="SITECHAT_METRICS__NAMESPACE"):
        load_metrics_config()


def test_answer_line_is_valid_emf_with_every_timing() -> None:
    """A finished answer writes one valid EMF line with latency, rate, tokens and outcome."""
    out = io.StringIO()
    metrics = ChatMetrics(EMFWriter(stream=out), provider="openai/gpt-4o-mini")
    with request_context("req-123"):
        doc = metrics.record(DONE)
    [line] = lines_of(out)
    assert line == doc
    validate_emf(line)
    assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Service"]]
    assert_metric_units(line, CHAT_METRICS)
    assert line["TimeToFirstToken"] == 80.25
    assert line["RetrievalLatency"] == 12.5
    assert line["AnswerLatency"] == 300
    assert line["TokensPerSecond"] == 42
    assert (line["InputTokens"], line["OutputTokens"]) == (900, 40)
    assert (line["Answers"], line["ProviderErrors"], line["Throttles"]) == (1, 0, 0)
    assert line["EmptyRetrievals"] == 0
    assert line["RequestId"] == "req-123"
    assert line["Provider"] == "openai/gpt-4o-mini"
    assert line["Outcome"] == "answered"


def test_throttled_answer_counts_as_error_and_throttle() -> None:
    """A RateLimitError answer sets ProviderErrors and Throttles to 1, with its error type."""
    out = io.StringIO()
    event = ErrorEvent(
        message="Rate limited.", error_type="RateLimitError", timings=Timings(retrieval_ms=4.0)
    )
    doc = ChatMetrics(EMFWriter(stream=out)).record(event, request_id="r1")
    assert doc is not None
    validate_emf(doc)
    assert (doc["ProviderErrors"], doc["Throttles"], doc["EmptyRetrievals"]) == (1, 1, 0)
    assert doc["ErrorType"] == "RateLimitError"
    assert doc["Outcome"] == "error"
    assert "TimeToFirstToken" not in doc  # no token ever came
    assert doc["RequestId"] == "r1"


def test_other_errors_are_not_throttles() -> None:
    """Only RateLimitError is a throttle; every ErrorEvent is a provider error."""
    doc = ChatMetrics(EMFWriter(stream=io.StringIO())).record(
        ErrorEvent(message="Down.", error_type="ServiceUnavailableError")
    )
    assert doc is not None
    assert (doc["ProviderErrors"], doc["Throttles"]) == (1, 0)
    assert "RetrievalLatency" not in doc  # no timings, no latency metrics
    validate_emf(doc)


def test_uncovered_question_is_an_empty_retrieval() -> None:
    """A DoneEvent with covered=False counts one EmptyRetrievals and no usage."""
    event = DoneEvent(answer="Not on the site.", cited=(), timings=Timings(3.0), covered=False)
    doc = ChatMetrics(EMFWriter(stream=io.StringIO())).record(event)
    assert doc is not None
    assert doc["EmptyRetrievals"] == 1
    assert doc["Outcome"] == "not_covered"
    assert "InputTokens" not in doc


def test_sources_and_tokens_write_nothing() -> None:
    """Only the end of an answer is recorded, so the service may pass every event."""
    out = io.StringIO()
    metrics = ChatMetrics(EMFWriter(stream=out))
    assert metrics.record(SourcesEvent(sources=())) is None
    assert metrics.record(TokenEvent("Hi")) is None
    assert out.getvalue() == ""


def test_ingest_line_counts_pages_and_chunks() -> None:
    """An ingest summary becomes one valid EMF line of counts and its duration."""
    summary = IngestSummary(
        pages_added=3, pages_updated=1, pages_failed=2, chunks_added=40, chunks_total=120
    )
    summary.add_time("fetch", 1.5)
    summary.add_time("embed", 0.5)
    out = io.StringIO()
    doc = IngestMetrics(EMFWriter(stream=out)).record(summary)
    assert doc is not None
    validate_emf(doc)
    assert_metric_units(doc, INGEST_METRICS)
    assert (doc["PagesAdded"], doc["PagesFailed"], doc["ChunksEmbedded"]) == (3, 2, 40)
    assert doc["IngestDuration"] == 2
    assert doc["PhaseSeconds"] == {"fetch": 1.5, "embed": 0.5}
    assert lines_of(out) == [doc]


def test_non_finite_values_are_left_out() -> None:
    """NaN or infinity would make the line invalid JSON for CloudWatch: it is dropped."""
    doc = EMFWriter(stream=io.StringIO()).write(
        [Metric("Good", 1.0, "Count"), Metric("Bad", float("nan"), "Count")]
    )
    assert doc is not None
    assert "Bad" not in doc
    assert [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["Good"]


def test_property_may_not_shadow_a_metric() -> None:
    """A property named like a metric or dimension is refused rather than corrupting it."""
    writer = EMFWriter(stream=io.StringIO())
    with pytest.raises(InvalidInputError):
        writer.document([Metric("Answers", 1, "Count")], {"Answers": "x"})
    with pytest.raises(InvalidInputError):
        writer.document([Metric("Answers", 1, "Count")], {"Service": "x"})


def test_invalid_writer_configuration_is_refused() -> None:
    """A namespace with ':' or an empty dimension value cannot produce valid lines."""
    with pytest.raises(InvalidInputError, match="Namespace"):
        EMFWriter("a:b")
    with pytest.raises(InvalidInputError, match="dimension"):
        EMFWriter("Sitechat", {"Service": ""})


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: d.pop("_aws"), "_aws"),
        (lambda d: d["_aws"].update(Timestamp="now"), "Timestamp"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0].pop("Namespace"), "Namespace"),
        (lambda d: d.pop("Service"), "dimension 'Service'"),
        (lambda d: d.update(Answers="1"), "metric 'Answers'"),
        (lambda d: d.pop("Answers"), "metric 'Answers'"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="ms"), "Unit"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0].update(Dimensions="Service"), "Dimensions"),
    ],
)
def test_validator_reports_each_broken_part(mutate: Any, problem: str) -> None:
    """emf_problems names what is wrong with a damaged document."""
    doc = ChatMetrics(EMFWriter(stream=io.StringIO())).record(DONE)
    assert doc is not None and emf_problems(doc) == []
    mutate(doc)
    problems = emf_problems(doc)
    assert problems
    assert any(problem in p for p in problems), problems
    with pytest.raises(InvalidInputError):
        validate_emf(doc)


metric_names = st.from_regex(r"[A-Z][A-Za-z]{0,20}", fullmatch=True)


@given(
    values=st.dictionaries(
        metric_names,
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**9), 10**9),
        max_size=20,
    ),
    service=st.text(min_size=1, max_size=50),
)
def test_any_written_document_is_valid(values: dict[str, float], service: str) -> None:
    """Whatever values are written, the line is valid EMF that survives a JSON round trip."""
    out = io.StringIO()
    writer = EMFWriter("Sitechat", {"Service": service}, stream=out)
    values.pop("Service", None)
    doc = writer.write([Metric(name, value, "Count") for name, value in values.items()])
    if doc is None:
        assert out.getvalue() == ""
        return
    [line] = lines_of(out)
    assert emf_problems(line) == []


def test_json_log_lines_carry_the_request_id_and_extras() -> None:
    """JSON logs are one object per line, with the request id set around the work."""
    out = io.StringIO()
    logger = logging.getLogger("sitechat.test.json")
    logger.propagate = False
    configure_logging(LoggingConfig(format="json", level="DEBUG"), stream=out, logger=logger)
    with request_context() as rid:
        assert current_request_id() == rid
        logger.info("answer finished", extra={"sources": 3})
    logger.warning("outside")
    first, second = lines_of(out)
    assert first["message"] == "answer finished"
    assert first["request_id"] == rid
    assert first["sources"] == 3
    assert first["level"] == "INFO"
    assert first["time"].endswith("Z")
    assert "request_id" not in second
    assert current_request_id() is None


def test_json_log_lines_mask_secrets_in_quoted_json() -> None:
    """A message or extra quoting JSON keeps its secrets masked, though JSON escapes its
    quotes: {\"password\": \"...\"} in the finished line."""
    out = io.StringIO()
    logger = logging.getLogger("sitechat.test.json.secrets")
    logger.propagate = False
    configure_logging(LoggingConfig(format="json", level="DEBUG"), stream=out, logger=logger)
    logger.warning(
        'Response body: {"password": "hunter2XYZ", "api_key": "key123XYZ"}',
        extra={
            "body": {"sent": '{"token": "tok123XYZ"}'},
            "error": ValueError('"secret": "s3XYZ"'),
        },
    )
    text = out.getvalue()
    assert "XYZ" not in text
    (line,) = lines_of(out)
    assert line["message"] == 'Response body: {"password": "***", "api_key": "***"}'
    assert line["body"] == {"sent": '{"token": "***"}'}
    assert line["error"] == '"secret": "***"'


def test_json_log_lines_stay_json_when_a_message_quotes_a_credential() -> None:
    """A message quoting a named credential ("token=...") gives a line that is still JSON,
    the credential masked."""
    out = io.StringIO()
    logger = logging.getLogger("sitechat.test.json.quoted")
    logger.propagate = False
    configure_logging(LoggingConfig(format="json", level="DEBUG"), stream=out, logger=logger)
    logger.warning('retry with "token=tok123XYZ" and "password=hunter2"')
    (line,) = lines_of(out)
    assert line["message"] == 'retry with "token=***" and "password=***"'


def test_configure_logging_replaces_its_own_handler() -> None:
    """Calling configure_logging twice leaves one sitechat handler, not two."""
    logger = logging.getLogger("sitechat.test.twice")
    logger.propagate = False
    configure_logging(LoggingConfig(), stream=io.StringIO(), logger=logger)
    configure_logging(LoggingConfig(format="json"), stream=io.StringIO(), logger=logger)
    assert len(logger.handlers) == 1
    assert isinstance(logger.handlers[0].formatter, JsonFormatter)


def test_exceptions_are_logged_as_one_json_line() -> None:
    """A logged exception stays inside its JSON line, so collectors keep it whole."""
    out = io.StringIO()
    logger = logging.getLogger("sitechat.test.exc")
    logger.propagate = False
    configure_logging(LoggingConfig(format="json"), stream=out, logger=logger)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    [line] = lines_of(out)
    assert "ValueError: boom" in line["exception"]


def test_metrics_through_the_json_logger_stay_valid_emf() -> None:
    """With destination 'logger', the JSON formatter writes the EMF document at top level."""
    out = io.StringIO()
    logger = logging.getLogger("sitechat.metrics")
    logger.propagate = False
    handler = configure_logging(LoggingConfig(format="json"), stream=out, logger=logger)
    try:
        writer = EMFWriter(logger=logger)
        with request_context("abc"):
            ChatMetrics(writer).record(DONE)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    [line] = lines_of(out)
    assert emf_problems(line) == []
    assert line["RequestId"] == "abc"
    assert line["logger"] == "sitechat.metrics"


def test_log_level_is_validated() -> None:
    """An unknown log level is refused with the levels that exist."""
    with pytest.raises(ValueError, match="DEBUG"):
        LoggingConfig(level="LOUD")
    assert LoggingConfig(level="warning").level == "WARNING"


def test_a_broken_metrics_stream_never_breaks_an_answer(caplog: pytest.LogCaptureFixture) -> None:
    """Metrics are best effort: a failing stream is logged and the record returns None."""
    closed = io.StringIO()
    closed.close()
    with caplog.at_level(logging.WARNING, logger="sitechat.observability.metrics"):
        assert ChatMetrics(EMFWriter(stream=closed)).record(DONE) is None
        assert IngestMetrics(EMFWriter(stream=closed)).record(IngestSummary()) is None
    assert "could not write a metrics line" in caplog.text


def test_request_id_crosses_into_the_facades_event_loop() -> None:
    """Work SiteChat runs on its loop thread sees the caller's request id (logs, metrics)."""
    from sitechat.chat.sync import LoopThread

    async def seen() -> str | None:
        return current_request_id()

    loop = LoopThread()
    try:
        with request_context("rid-42"):
            assert loop.run(seen()) == "rid-42"
        assert loop.run(seen()) is None
    finally:
        loop.close()


def _monitoring_snippet() -> str:
    """The Python block of docs/src/app.md's Monitoring section, as written."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "src" / "app.md").read_text()
    section = docs.split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    [snippet] = re.findall(r"```python\n(.+?)\n```", section, re.DOTALL)
    return snippet


class _OwnService(ChatService):
    """A chat service of one's own: it answers, and records no metrics itself."""

    name = "own"

    @classmethod
    def from_components(cls, settings: Any, **components: Any) -> _OwnService:
        return cls()

    async def stream_events(
        self, message: str, history: HistoryLike = ()
    ) -> AsyncGenerator[ChatEvent, None]:
        yield SourcesEvent(sources=())
        yield TokenEvent(text=DONE.answer)
        yield DONE


def test_the_documented_snippet_writes_one_line_per_answer_of_an_own_service(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The docs' monitoring snippet, run as written around a ChatService of one's own, writes
    one valid EMF line per answer, each with its own request id."""
    monkeypatch.setenv("SITECHAT_METRICS__ENABLED", "true")
    code = compile(_monitoring_snippet(), "app.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for _ in range(2):  # two answers
        asyncio.run(eval(code, {"my_service": _OwnService()}))  # top-level `async for`
    lines = lines_of_text(capsys.readouterr().out)
    assert [line["Answers"] for line in lines] == [1, 1]
    assert all(emf_problems(line) == [] for line in lines)
    assert len({line["RequestId"] for line in lines}) == 2
