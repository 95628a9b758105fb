"""The ``sitechat`` command: a thin layer that parses arguments and calls the public API.

Scripts rely on these forms and on ``--json`` output staying stable::

    sitechat ingest SOURCE [SOURCE...] --index DIR [--json]
    sitechat search QUERY --index DIR [-k N] [--json]
    sitechat ask QUESTION --index DIR [--json]
    sitechat eval QUESTIONS.jsonl --index DIR [-k 5] [--min-recall X] [--min-declined X] [--json]
    sitechat providers [--json]

Failures print one line to stderr and exit non-zero (1 for errors, 2 for bad usage); the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from sitechat import __version__
from sitechat._redact import redact
from sitechat.config import Settings, describe_validation_error
from sitechat.errors import ConfigurationError, SitechatError

if TYPE_CHECKING:
    from sitechat.ingest.pipeline import IngestSummary

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
# as a tool killed by SIGPIPE exits: the reader of the output went away
EXIT_BROKEN_PIPE = 141
# 128 + the signal's number, as shells report a process ended by SIGINT or SIGTERM
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own message, without the usage dump
        self.exit(EXIT_USAGE, f"sitechat: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    """``-k``: a whole number of at least 1 (0 is not "the default", -1 not "all")."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _fraction(text: str) -> float:
    """``--min-recall``: a number from 0 to 1 (recall cannot pass 1; NaN passes nothing)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sitechat", description="Chat with a website: ingest it, then ask.")
    parser.add_argument("--version", action="version", version=f"sitechat {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def index_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--index", metavar="DIR", help="index location (default: SITECHAT_INDEX)")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser("ingest", help="crawl a site or read a folder into an index")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="http(s) URL or local path")
    index_option(p)
    p.add_argument("--allow-private", action="store_true", help="allow intranet/localhost URLs")
    p.add_argument("--base-url", help="public URL that local files are served under")
    p.add_argument("--max-pages", type=int, help="stop crawling after this many pages")
    p.add_argument("--max-depth", type=int, help="follow links at most this deep")
    p.add_argument("--max-bytes", type=int, help="skip pages larger than this many bytes")
    p.add_argument("--max-seconds", type=float, help="stop crawling after this many seconds")
    p.add_argument("--delay", type=float, help="seconds between requests to one host")
    p.add_argument("--user-agent", help="the User-Agent the crawler sends")
    p.add_argument("--include", action="append", metavar="REGEX", help="only follow matching links")
    p.add_argument(
        "--exclude", action="append", metavar="REGEX", help="never follow matching links"
    )
    p.add_argument("--sitemap", action="append", metavar="URL", help="read this sitemap first")
    p.add_argument(
        "--no-sitemaps", action="store_true", help="do not discover sitemaps via robots.txt"
    )
    p.add_argument(
        "--trusted-host",
        action="append",
        metavar="HOST[:PORT]",
        help="allow this one private host (narrower than --allow-private)",
    )

    p = sub.add_parser("search", help="show the passages that best match a query")
    p.add_argument("query", metavar="QUERY")
    index_option(p)
    p.add_argument(
        "-k", type=_positive_int, default=None, help="number of results (default: top_k)"
    )

    p = sub.add_parser("ask", help="answer a question from the index, with sources")
    p.add_argument("question", metavar="QUESTION")
    index_option(p)

    p = sub.add_parser("eval", help="recall@k and MRR of a question set against an index")
    p.add_argument("questions", metavar="QUESTIONS.jsonl")
    index_option(p)
    p.add_argument(
        "-k", type=_positive_int, default=5, help="a question is a hit if its page is in the top k"
    )
    p.add_argument(
        "--min-recall",
        type=_fraction,
        metavar="X",
        help="exit 1 when recall@k is below X (0 to 1)",
    )
    p.add_argument(
        "--min-declined",
        type=_fraction,
        metavar="X",
        help='exit 1 when under X (0 to 1) of the off-topic questions ("expected": []) '
        "are judged not covered",
    )
    p.add_argument(
        "--base-url",
        help="resolve relative expected URLs against this absolute URL "
        "(https://... or file:///...)",
    )

    p = sub.add_parser("verify", help="check an index in full: vectors, chunks, keyword index")
    index_option(p)

    p = sub.add_parser("providers", help="list the registered providers")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parser


_INGEST_OPTIONS = (
    ("max_pages", "max_pages"),
    ("max_depth", "max_depth"),
    ("max_bytes", "max_bytes_per_page"),
    ("max_seconds", "max_seconds"),
    ("delay", "delay"),
    ("user_agent", "user_agent"),
    ("include", "include"),
    ("exclude", "exclude"),
    ("sitemap", "sitemaps"),
    ("trusted_host", "trusted_hosts"),
)


class _BadOption(ConfigurationError):
    """An option's value out of range (``--max-pages -1``): bad usage, exit code 2, like
    ``-k 0``. The same value from the environment stays a settings error (exit 1)."""


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.load()
    update: dict[str, Any] = {}
    if getattr(args, "index", None) is not None:
        update["index"] = args.index  # an empty --index is refused when the index is opened
    ingest_update = {
        setting: getattr(args, option)
        for option, setting in _INGEST_OPTIONS
        if getattr(args, option, None) is not None
    }
    if getattr(args, "no_sitemaps", False):
        ingest_update["use_sitemaps"] = False
    if ingest_update:
        # validate CLI values exactly like environment values
        merged = {**settings.ingest.model_dump(), **ingest_update}
        try:
            update["ingest"] = type(settings.ingest).model_validate(merged)
        except ValidationError as exc:
            raise _BadOption(_describe_ingest_error(exc, ingest_update)) from None
    return settings.model_copy(update=update) if update else settings


def _describe_ingest_error(exc: ValidationError, given: dict[str, Any]) -> str:
    """The bad values named by the options that set them (``--max-pages: …``).

    The environment's values were checked when the settings loaded, so a field no option
    set can only fail with another (a rule across fields): then the variables are named.
    """
    flags = {setting: "--" + option.replace("_", "-") for option, setting in _INGEST_OPTIONS}
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        if field not in given or field not in flags:
            return describe_validation_error(exc, "SITECHAT_INGEST__")
        problems.append(f"{flags[field]}: {err['msg'].removeprefix('Value error, ')}")
    return "Invalid option: " + "; ".join(problems) + "."


def _print_json(data: object, out: TextIO) -> None:
    out.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


class _ProgressBar:
    """A rich progress bar on stderr for interactive runs; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                transient=True,
                console=None,
            )

    def __enter__(self) -> _ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, phase: str, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(phase)
        label = {"fetch": "crawling", "embed": "embedding"}.get(phase, phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(label, total=total)
        self._progress.update(task, completed=done, total=total)


def _masked(summary: IngestSummary) -> IngestSummary:
    """``summary`` fit to print: credentials in its URLs, reasons and notes masked."""
    return replace(
        summary,
        skipped=[(redact(url), redact(reason)) for url, reason in summary.skipped],
        failed=[(redact(url), redact(reason)) for url, reason in summary.failed],
        truncated=[redact(note) for note in summary.truncated],
        redirects=[(redact(start), redact(target)) for start, target in summary.redirects],
    )


async def _ingest(args: argparse.Namespace, out: TextIO) -> int:
    from sitechat.api import ingest

    settings = _settings(args)
    with _ProgressBar(enabled=sys.stderr.isatty() and not args.json) as bar:
        summary = await ingest(
            args.sources,  # checked (an empty one refused) before the index is opened
            settings=settings,
            allow_private=args.allow_private,
            base_url=args.base_url,
            progress=bar.update,
        )
    summary = _masked(summary)
    if args.json:
        _print_json(summary.to_dict(), out)
        return 0
    out.write(
        f"Indexed {summary.pages_seen} pages into {settings.index}: "
        f"{summary.pages_added} added, {summary.pages_updated} updated, "
        f"{summary.pages_unchanged} unchanged ({summary.pages_not_modified} not modified), "
        f"{summary.pages_removed} removed, "
        f"{summary.pages_skipped} skipped, {summary.pages_failed} failed.\n"
        f"Chunks: {summary.chunks_added} embedded, {summary.chunks_unchanged} unchanged, "
        f"{summary.chunks_removed} removed, {summary.chunks_total} in the index.\n"
    )
    for start, target in summary.redirects:
        out.write(f"  {start} redirects to {target}: crawled from there\n")
    for url, reason in summary.failed[:10]:
        out.write(f"  failed: {url} ({reason})\n")
    for note in summary.truncated:
        out.write(f"  stopped early: {note}\n")
    return 0


async def _search(args: argparse.Namespace, out: TextIO) -> int:
    from sitechat.api import search

    settings = _settings(args)
    hits = await search(args.query, k=args.k, settings=settings)
    if not hits:
        await _warn_if_empty(settings)
    if args.json:
        _print_json(
            [
                {
                    "url": h.chunk.link,
                    "title": h.chunk.title,
                    "heading": h.chunk.heading,
                    "text": h.chunk.text,
                    "score": round(h.score, 6),
                }
                for h in hits
            ],
            out,
        )
        return 0
    if not hits:
        out.write("No matching passages.\n")
    for i, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.chunk.text.split())[:160]
        out.write(f"{i}. {hit.chunk.title} [{hit.score:.4f}]\n   {hit.chunk.link}\n   {snippet}\n")
    return 0


async def _warn_if_empty(settings: Settings) -> None:
    """Say so on stderr when a search found nothing because the index holds nothing."""
    from sitechat.registry import load_provider

    # the store alone: counting needs no embedder (open_store would build one)
    store_cls = load_provider("vectorstores", settings.vectorstore.provider)
    store = await store_cls.open(settings, None, create=False)
    try:
        empty = await store.count() == 0
    finally:
        await store.aclose()
    if empty:
        _empty_index_warning(settings)


def _empty_index_warning(settings: Settings) -> None:
    sys.stderr.write(
        f"sitechat: warning: the index {settings.index} holds no passages yet, so nothing "
        f"can be found: build it first (sitechat ingest <URL or folder> --index "
        f"{settings.index})\n"
    )


async def _ask(args: argparse.Namespace, out: TextIO) -> int:
    from sitechat.api import open_chat
    from sitechat.events import DoneEvent, ErrorEvent, SourcesEvent, TokenEvent

    settings = _settings(args)
    chat = await open_chat(settings=settings)
    sources: tuple[Any, ...] = ()
    parts: list[str] = []
    store = getattr(getattr(chat, "retriever", None), "store", None)
    if store is not None and await store.count() == 0:
        _empty_index_warning(settings)
    try:
        async for event in chat.stream_events(args.question):
            if isinstance(event, SourcesEvent):
                sources = event.sources
            elif isinstance(event, TokenEvent):
                parts.append(event.text)
                if not args.json:
                    out.write(event.text)
                    out.flush()
            elif isinstance(event, DoneEvent):
                cited = set(event.cited)
                if args.json:
                    _print_json(
                        {
                            "answer": event.answer,
                            "covered": event.covered,
                            "cited": list(event.cited),
                            "sources": [
                                {"n": s.n, "url": s.url, "title": s.title, "cited": s.n in cited}
                                for s in sources
                            ],
                        },
                        out,
                    )
                else:
                    out.write("\n")
                    if sources and event.covered:
                        out.write("\nSources:\n")
                        for s in sources:
                            mark = "*" if s.n in cited else " "
                            out.write(f" {mark}[{s.n}] {s.title} — {s.url}\n")
            elif isinstance(event, ErrorEvent):
                if not args.json:
                    out.write("\n")
                sys.stderr.write(f"sitechat: error: {event.message}\n")
                return EXIT_ERROR
    finally:
        await chat.aclose()
    return 0


async def _eval(args: argparse.Namespace, out: TextIO) -> int:
    from sitechat.evaluation import evaluate_index, load_questions

    questions = load_questions(args.questions, base_url=args.base_url)
    report = await evaluate_index(questions, settings=_settings(args), k=args.k)
    if args.json:
        _print_json(report.to_dict(), out)
        if report.unmatched:  # the JSON lists them; say so where a person looks
            sys.stderr.write(
                f"sitechat: {report.unmatched_warning()} see unmatched_expected in the JSON\n"
            )
    else:
        out.write(report.format() + "\n")
    failed = False
    if args.min_recall is not None and not report.meets(args.min_recall):
        sys.stderr.write(
            f"sitechat: error: recall@{args.k} {report.recall:.3f} is below {args.min_recall}\n"
        )
        failed = True
    if args.min_declined is not None and not report.off_topic:
        sys.stderr.write(
            'sitechat: error: --min-declined needs off-topic questions ("expected": []) '
            f"in {args.questions}, and it has none\n"
        )
        failed = True
    elif args.min_declined is not None and not report.declines_enough(args.min_declined):
        sys.stderr.write(
            f"sitechat: error: {report.declined_rate:.3f} of the off-topic questions were "
            f"declined, below {args.min_declined}\n"
        )
        failed = True
    return EXIT_ERROR if failed else 0


async def _verify(args: argparse.Namespace, out: TextIO) -> int:
    from sitechat.api import verify_index

    check = await verify_index(settings=_settings(args))
    if args.json:
        _print_json(check.to_dict(), out)
    elif check.ok:
        vectors = "" if check.vectors is None else f", {check.vectors} vectors"
        kept = f" ({check.tombstones} kept for deleted chunks)" if check.tombstones else ""
        out.write(
            f"The {check.store} is sound: {check.chunks} chunks{vectors}{kept}.\n"
            f"Checked: {', '.join(check.checked)}.\n"
        )
    else:
        out.write(f"The {check.store} is damaged:\n")
        for problem in check.problems:
            out.write(f"  - {redact(problem)}\n")
        out.write(
            "Re-ingest into a new index (or restore a backup) and point SITECHAT_INDEX at it.\n"
        )
    return 0 if check.ok else EXIT_ERROR


def _providers(args: argparse.Namespace, out: TextIO) -> int:
    from sitechat.registry import check_providers

    statuses = check_providers()
    if args.json:
        _print_json(
            [
                {
                    "group": s.info.group,
                    "name": s.info.name,
                    "distribution": s.info.distribution,
                    "version": s.info.version,
                    "target": s.info.target,
                    "ok": s.ok,
                    "error": s.error,
                    "also_registered_by": list(s.info.also_registered_by),
                }
                for s in statuses
            ],
            out,
        )
        return 0
    group = None
    for status in statuses:
        if status.info.group != group:
            group = status.info.group
            out.write(f"{group}:\n")
        state = "" if status.ok else f"  BROKEN: {status.error}"
        if status.ok and status.info.also_registered_by:
            state = f"  (also registered by {', '.join(status.info.also_registered_by)}: ignored)"
        out.write(
            f"  {status.info.name:<16} {status.info.distribution} {status.info.version}{state}\n"
        )
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    from sitechat.observability.metrics import metrics_stream

    out = out or sys.stdout
    args = _parser().parse_args(argv)
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    # stdout is the command's output (`--json` must parse): metrics lines wait here, and go
    # to stderr as whole lines once the output is written
    metrics_lines = io.StringIO()
    try:
        _configure_logging(debug=args.debug)
        if args.command == "providers":
            return _providers(args, out)
        handler = {
            "ingest": _ingest,
            "search": _search,
            "ask": _ask,
            "eval": _eval,
            "verify": _verify,
        }[args.command]
        with metrics_stream(metrics_lines):
            return asyncio.run(_until_terminated(handler(args, out)))
    except SitechatError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"sitechat: error: {exc}\n")
        return EXIT_USAGE if isinstance(exc, _BadOption) else EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("sitechat: interrupted\n")
        return EXIT_INTERRUPTED
    except _Terminated:
        sys.stderr.write("sitechat: terminated\n")
        return EXIT_TERMINATED
    except BrokenPipeError:
        # the reader went away (`sitechat search … | head -1`): stop quietly, as Unix tools
        # do, and keep Python from complaining again when it flushes stdout at exit
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if args.debug:
            raise
        sys.stderr.write(
            f"sitechat: unexpected error ({type(exc).__name__}: {exc}). "
            "Run again with --debug for details.\n"
        )
        return EXIT_ERROR
    finally:
        with contextlib.suppress(OSError):
            sys.stderr.write(metrics_lines.getvalue())
            sys.stderr.flush()
        # main() may run inside another program (a test, a notebook): leave its logging be
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


class _Terminated(Exception):
    """The process was sent SIGTERM (``timeout``, systemd, ``docker stop``, Kubernetes)."""


async def _until_terminated(command: Coroutine[Any, Any, int]) -> int:
    """Run ``command``, cancelling it on SIGTERM as Ctrl-C does, so its clean-up runs (a
    first ingest removes the empty index it created) before the process exits."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        if terminated:  # a second SIGTERM must not cancel the clean-up the first started
            return
        terminated = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
        handled = True
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        handled = False
    try:
        return await command
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)


def _configure_logging(*, debug: bool) -> None:
    """Logs to stderr as ``SITECHAT_LOG__FORMAT`` and ``SITECHAT_LOG__LEVEL`` say.

    A command line shows warnings and worse unless the level is set (``--debug`` shows
    everything), and ``SITECHAT_LOG__FORMAT=json`` gives a scheduled ingest JSON lines.
    """
    from sitechat.config import load_provider_config
    from sitechat.observability.logging import LoggingConfig, configure_logging

    class CommandLineLogging(LoggingConfig):
        level: str = "WARNING"

    config = load_provider_config(CommandLineLogging, "log")
    if debug:
        config = config.model_copy(update={"level": "DEBUG"})
    configure_logging(config, stream=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
