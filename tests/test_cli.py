"""The CLI forms users' scripts rely on, on the bundled sample site."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sitechat.cli import main

SAMPLE_SITE = Path(__file__).resolve().parent.parent / "examples" / "sample_site"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the sample site, built once through the CLI."""
    index = tmp_path_factory.mktemp("cli") / "index"
    code, _ = run("ingest", str(SAMPLE_SITE), "--index", str(index))
    assert code == 0
    return index


def test_ingest_prints_a_summary(sample_site: Path, tmp_path: Path) -> None:
    """`sitechat ingest DIR --index I` reads the folder and reports what it indexed."""
    code, out = run("ingest", str(sample_site), "--index", str(tmp_path / "i"))
    assert code == 0
    assert "added" in out and "Chunks:" in out


def test_reingest_is_incremental_and_json(sample_site: Path, tmp_path: Path) -> None:
    """A second ingest of an unchanged site embeds nothing; --json gives the counts."""
    index = str(tmp_path / "i")
    code, first = run("ingest", str(sample_site), "--index", index, "--json")
    assert code == 0
    code, second = run("ingest", str(sample_site), "--index", index, "--json")
    before, after = json.loads(first), json.loads(second)
    assert before["chunks"]["added"] > 0
    assert after["chunks"]["added"] == 0
    assert after["pages"]["unchanged"] == before["pages"]["added"]
    assert after["chunks"]["total"] == before["chunks"]["total"]


def test_search_json_shape(built_index: Path) -> None:
    """`search --json` prints one array of hits with url (#anchor), title, text and score."""
    code, out = run("search", "delete my account", "--index", str(built_index), "-k", "3", "--json")
    assert code == 0
    hits = json.loads(out)
    assert 1 <= len(hits) <= 3
    assert {"url", "title", "text", "score"} <= set(hits[0])
    assert any("account" in h["url"] and "#" in h["url"] for h in hits)


def test_ask_json_answers_with_sources(built_index: Path) -> None:
    """`ask --json` gives the answer and numbered sources with urls and titles."""
    code, out = run("ask", "How do I delete my account?", "--index", str(built_index), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["answer"]
    assert "[1]" in data["answer"] or "[2]" in data["answer"]
    assert data["sources"][0]["n"] == 1
    assert {"n", "url", "title"} <= set(data["sources"][0])


def test_ask_streams_text_then_sources(built_index: Path) -> None:
    """Plain `ask` prints the answer followed by a Sources list."""
    code, out = run("ask", "How do I delete my account?", "--index", str(built_index))
    assert code == 0
    assert "Sources:" in out


def test_providers_lists_groups(capsys: pytest.CaptureFixture[str]) -> None:
    """`providers` lists every group with the built-ins and their distribution."""
    code, out = run("providers")
    assert code == 0
    for word in ("llm:", "embeddings:", "vectorstores:", "chat:", "extractive", "hashing", "faiss"):
        assert word in out


def test_missing_index_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asking an index that does not exist fails with exit 1 and a hint, no traceback."""
    code, _ = run("ask", "anything?", "--index", str(tmp_path / "nope"))
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "sitechat ingest" in err
    assert "Traceback" not in err


def test_bad_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown option is a usage error (exit 2) with one line."""
    with pytest.raises(SystemExit) as info:
        main(["search", "x", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_an_include_pattern_that_is_no_regex_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--include '('` exits 2 naming the option, before any index is created."""
    code, _ = run("ingest", str(SAMPLE_SITE), "--index", str(tmp_path / "i"), "--include", "(")
    assert code == 2
    assert "--include: '(' is not a regular expression" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()


def test_unknown_source_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A source that is neither a URL nor a path is refused clearly, creating no index."""
    code, _ = run("ingest", "no/such/folder", "--index", str(tmp_path / "i"))
    assert code == 1
    assert "neither an http(s) URL nor an existing" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()


def _serve(folder: Path) -> Generator[str, None, None]:
    """``folder`` served over real HTTP on 127.0.0.1 while the generator is open."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def served_site(sample_site: Path) -> Iterator[str]:
    """The sample site served over real HTTP on 127.0.0.1."""
    yield from _serve(sample_site)


def test_ingest_url_with_allow_private(served_site: str, tmp_path: Path) -> None:
    """Crawling a local web server works when private addresses are explicitly allowed."""
    code, out = run(
        "ingest", served_site, "--index", str(tmp_path / "i"), "--allow-private", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["pages"]["added"] >= 5
    code, out = run("search", "refund", "--index", str(tmp_path / "i"), "--json")
    assert json.loads(out)[0]["url"].startswith(served_site)


def test_private_url_refused_by_default(
    served_site: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --allow-private a loopback URL is refused with a hint."""
    code, _ = run("ingest", served_site, "--index", str(tmp_path / "i"))
    assert code == 1
    assert "--allow-private" in capsys.readouterr().err


def test_an_unknown_host_gives_its_advice_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host that does not resolve is named once, with one piece of advice, not two."""
    code, _ = run("ingest", "https://no-such-host.invalid/", "--index", str(tmp_path / "i"))
    err = capsys.readouterr().err
    assert code == 1 and "Could not resolve host 'no-such-host.invalid'" in err
    assert "Check the URL" not in err and err.count("Check that the URL is reachable") == 1


def test_unreachable_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A URL nothing answers on fails with exit 1 and one line."""
    code, _ = run(
        "ingest", "http://127.0.0.1:9/", "--index", str(tmp_path / "i"), "--allow-private"
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "127.0.0.1:9" in err and "Traceback" not in err


def test_credentials_in_a_source_url_are_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing source URL with user:password@ is named without its password."""
    url = "http://bob:topsecret-pw@127.0.0.1:9/"
    code, _ = run("ingest", url, "--index", str(tmp_path / "i"), "--allow-private")
    err = capsys.readouterr().err
    assert code == 1
    assert "127.0.0.1:9" in err and "topsecret" not in err


@pytest.mark.parametrize(
    "base_url", ["javascript:alert(1)", "docs.example.com", "https://u:pw@docs.example.com/"]
)
def test_base_url_must_be_a_plain_web_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], base_url: str
) -> None:
    """--base-url becomes every citation's link: only http(s) with a host is accepted."""
    sample = Path(__file__).resolve().parents[1] / "examples" / "sample_site"
    index = tmp_path / "i"
    code, _ = run("ingest", str(sample), "--index", str(index), "--base-url", base_url)
    err = capsys.readouterr().err
    assert code == 1
    assert "base_url" in err and "http://" in err and "pw@" not in err
    assert not index.exists()  # refused before anything was created


@pytest.mark.parametrize(
    "base_url", ["https://docs.example.com/v1/#top", "https://docs.example.com/v1?x=1"]
)
def test_base_url_with_a_query_or_fragment_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], base_url: str
) -> None:
    """A #fragment would give every page one URL (all but one lost) and a ?query would
    swallow the paths: both are refused, naming the address without them."""
    sample = Path(__file__).resolve().parents[1] / "examples" / "sample_site"
    index = tmp_path / "i"
    code, _ = run("ingest", str(sample), "--index", str(index), "--base-url", base_url)
    err = capsys.readouterr().err
    assert code == 1
    assert "?query or #fragment" in err and "https://docs.example.com/v1" in err
    assert not index.exists()


def test_a_usage_error_points_at_the_right_help(capsys: pytest.CaptureFixture[str]) -> None:
    """No command at all points at 'sitechat --help'; a subcommand's error at its own help."""
    with pytest.raises(SystemExit):
        main([])
    assert "(see 'sitechat --help')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ingest"])
    assert "(see 'sitechat ingest --help')" in capsys.readouterr().err


def test_output_into_a_closed_pipe_stops_quietly(built_index: Path) -> None:
    """`sitechat search … | head -1`: the reader going away ends the command with 141 (as
    SIGPIPE would) and no "unexpected error"."""
    exe = Path(sys.executable).parent / "sitechat"
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that is already gone: the first write fails
    try:
        result = subprocess.run(
            [str(exe), "search", "notes", "--index", str(built_index), "-k", "20"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert "unexpected error" not in result.stderr and "Traceback" not in result.stderr


def test_ask_and_search_on_an_empty_index_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An index that holds no passages answers, and a warning on stderr says why nothing
    is found and how to build it."""
    import asyncio

    from sitechat.config import Settings
    from sitechat.factories import open_store

    index = tmp_path / "empty"

    async def make_empty() -> None:
        store, _ = await open_store(Settings.load(env_file=None, index=str(index)), create=True)
        await store.aclose()

    asyncio.run(make_empty())
    for command in (["ask", "How do I export notes?"], ["search", "export notes"]):
        code, _ = run(*command, "--index", str(index))
        assert code == 0
        err = capsys.readouterr().err
        assert (
            "holds no passages yet" in err
            and f"sitechat ingest <URL or folder> --index {index}" in err
        )


def test_a_filled_index_gives_no_empty_index_warning(
    built_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warning is only for an index with nothing in it."""
    code, _ = run("search", "zzzqqqxxyy", "--index", str(built_index))
    assert code == 0
    assert "holds no passages" not in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_runs(built_index: Path) -> None:
    """The installed `sitechat` console script answers as the README shows."""
    exe = Path(sys.executable).parent / "sitechat"
    result = subprocess.run(
        [str(exe), "ask", "How do I delete my account?", "--index", str(built_index)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Sources:" in result.stdout


@pytest.mark.slow
def test_metrics_lines_go_to_stderr_and_leave_stdout_to_the_output(
    built_index: Path, tmp_path: Path
) -> None:
    """With metrics on, the real command's stdout stays its output (`--json` parses, no EMF
    after the answer) and each metrics line is a whole valid EMF line on stderr."""
    from sitechat.observability import emf_problems

    exe = Path(sys.executable).parent / "sitechat"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITECHAT_")}
    env["SITECHAT_METRICS__ENABLED"] = "true"
    question = "How do I delete my account?"
    commands = {
        "answer": ["ask", question, "--index", str(built_index), "--json"],
        "ingest": ["ingest", str(SAMPLE_SITE), "--index", str(tmp_path / "index"), "--json"],
    }
    for event, argv in commands.items():
        result = subprocess.run(
            [str(exe), *argv], capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout)  # the whole of stdout is the --json document
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        document = json.loads(lines[0])
        assert document["Event"] == event and emf_problems(document) == []

    plain = subprocess.run(
        [str(exe), "ask", question, "--index", str(built_index)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, as a terminal shows them
        text=True,
        env=env,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stdout
    emf = [line for line in plain.stdout.splitlines() if "_aws" in line]
    assert len(emf) == 1 and emf[0].startswith('{"_aws"'), plain.stdout
    assert plain.stdout.rstrip().endswith(emf[0])  # after the answer and its sources


# ---------------------------------------------------------------- eval and argument ranges


def _questions(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_eval_matches_expected_entries_with_a_fragment(built_index: Path, tmp_path: Path) -> None:
    """An expected entry with a #fragment is scored by its page, like the retrieved URLs."""
    questions = _questions(
        tmp_path,
        '{"question": "How do I delete my account?", "expected": ["account.html#delete"]}',
    )
    base = SAMPLE_SITE.resolve().as_uri() + "/"
    code, out = run("eval", questions, "--index", str(built_index), "--base-url", base, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["results"][0]["expected"] == [base + "account.html"]
    assert data["hits"] == 1
    assert data["unmatched_expected"] == []


def test_eval_gates_on_the_share_of_off_topic_questions_declined(
    built_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--min-declined exits 1 when too few "expected": [] questions are judged not covered,
    and refuses to pass on a file that has none."""
    base = SAMPLE_SITE.resolve().as_uri() + "/"
    questions = _questions(
        tmp_path,
        '{"question": "How do I delete my account?", "expected": ["account.html"]}',
        '{"question": "How do I bake sourdough bread?", "expected": []}',
    )
    args = ["eval", questions, "--index", str(built_index), "--base-url", base]
    code, out = run(*args, "--min-declined", "1")
    assert code == 0
    assert "recall@5: 1.000 (1/1)" in out and "off-topic declined: 1.000 (1/1)" in out
    only_answerable = _questions(
        tmp_path, '{"question": "How do I delete my account?", "expected": ["account.html"]}'
    )
    code, _ = run("eval", only_answerable, "--index", str(built_index), "--base-url", base,
                  "--min-declined", "0.5")  # fmt: skip
    assert code == 1
    assert "--min-declined needs off-topic questions" in capsys.readouterr().err


@pytest.mark.parametrize("base", [str(SAMPLE_SITE), "examples/sample_site/", "sample_site"])
def test_eval_base_url_must_be_absolute(
    built_index: Path, tmp_path: Path, base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A filesystem or relative path as --base-url is refused instead of scoring recall 0."""
    questions = _questions(tmp_path, '{"question": "q", "expected": ["account.html"]}')
    code, _ = run("eval", questions, "--index", str(built_index), "--base-url", base)
    assert code == 1
    err = capsys.readouterr().err
    assert "not an absolute URL" in err and "file:///" in err


def test_eval_warns_about_expected_pages_missing_from_the_index(
    built_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expected entry matching no indexed page (typo, other host) is named in a warning."""
    questions = _questions(
        tmp_path,
        '{"question": "How do I delete my account?", "expected": ["account.html"]}',
        '{"question": "Refunds?", "expected": ["biling.html"]}',
        '{"question": "Other host?", "expected": ["https://elsewhere.example/billing"]}',
    )
    base = SAMPLE_SITE.resolve().as_uri() + "/"
    code, out = run("eval", questions, "--index", str(built_index), "--base-url", base)
    assert code == 0
    assert "warning: 2 expected entries match no page URL in the index" in out
    assert f"line 2: {base}biling.html" in out
    assert "line 3: https://elsewhere.example/billing" in out
    assert "account.html" not in out.split("warning:")[1]
    code, out = run("eval", questions, "--index", str(built_index), "--base-url", base, "--json")
    assert code == 0
    assert [u["line"] for u in json.loads(out)["unmatched_expected"]] == [2, 3]
    assert "match no page URL in the index" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "q", "-k", "0"], "argument -k: must be a whole number of at least 1"),
        (["search", "q", "-k", "-1"], "argument -k: must be a whole number of at least 1"),
        (["search", "q", "-k", "2.5"], "argument -k: must be a whole number of at least 1"),
        (["eval", "q.jsonl", "-k", "0"], "argument -k: must be a whole number of at least 1"),
        (["eval", "q.jsonl", "--min-recall", "2"], "--min-recall: must be a number from 0 to 1"),
        (["eval", "q.jsonl", "--min-recall", "-1"], "--min-recall: must be a number from 0 to 1"),
        (["eval", "q.jsonl", "--min-recall", "nan"], "--min-recall: must be a number from 0 to 1"),
        (["eval", "q.jsonl", "--min-declined", "2"], "--min-declined: must be a number from 0"),
    ],
)
def test_k_and_min_recall_out_of_range_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """-k below 1 or fractional, and --min-recall outside [0, 1], exit 2 naming the option."""
    with pytest.raises(SystemExit) as caught:
        run(*argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- empty sources and index


@pytest.mark.parametrize("source", ["", "  "])
def test_empty_source_is_refused_before_an_index_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    """`ingest ''` exits 1 saying what to give, creates no index; `ingest .` reads the cwd."""
    shutil.copy(SAMPLE_SITE / "faq.html", tmp_path / "faq.html")  # tmp_path is the cwd
    index = tmp_path / "i"
    code, _ = run("ingest", source, "--index", str(index))
    err = capsys.readouterr().err
    assert code == 1
    assert "source is empty" in err and "use . for the current directory" in err
    assert not index.exists()
    code, out = run("ingest", ".", "--index", str(index), "--json")
    assert code == 0
    assert json.loads(out)["pages"]["added"] == 1


@pytest.mark.parametrize("command", [["ingest", str(SAMPLE_SITE)], ["search", "refund"]])
def test_empty_index_option_is_refused_like_an_empty_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """`--index ''` fails like SITECHAT_INDEX='' instead of falling back to the default index."""
    code, _ = run(*command, "--index", "")
    assert code == 1
    assert "The index location is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no sitechat-index/ in the cwd


def test_ingest_summary_masks_tokens_in_failed_and_skipped_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed and skipped URLs carrying ?token=... are printed masked, in text and --json."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        "<title>Home</title><main><h1>Home</h1><p>The home page of a small site, with two "
        "links that carry a token in their query.</p>"
        '<a href="missing.html?token=s3cr3t-one">gone</a> '
        '<a href="index.html?access_token=s3cr3t-two">again</a></main>'
    )
    served = _serve(site)
    url = next(served)
    try:
        index = str(tmp_path / "i")
        code, text = run("ingest", url, "--index", index, "--allow-private")
        code_json, out = run("ingest", url, "--index", index, "--allow-private", "--json")
    finally:
        served.close()
    assert code == code_json == 0
    data = json.loads(out)
    failed = [f["url"] for f in data["failed"]]
    skipped = [s["url"] for s in data["skipped"]]
    assert url + "missing.html?token=***" in failed
    assert url + "index.html?access_token=***" in skipped
    assert "failed: " + url + "missing.html?token=***" in text
    assert "s3cr3t" not in text + out + capsys.readouterr().err


def test_ingest_summary_masks_secrets_in_incomplete_notes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "could not be read" note naming a source path with token=... is printed masked."""
    from sitechat.ingest import local

    folder = tmp_path / "docs-token=s3cr3t-three"
    folder.mkdir()
    shutil.copy(SAMPLE_SITE / "faq.html", folder / "faq.html")
    (folder / "broken.html").write_text("<p>unreadable</p>")
    real_read = local._read_bytes

    def read(path: Path, max_bytes: int) -> bytes | None:
        if path.name == "broken.html":  # root reads any file: refuse this one by hand
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, max_bytes)

    monkeypatch.setattr(local, "_read_bytes", read)
    index = str(tmp_path / "i")
    code, text = run("ingest", str(folder), "--index", index)
    code_json, out = run("ingest", str(folder), "--index", index, "--json")
    assert code == code_json == 0
    notes = json.loads(out)["crawl"]["truncated"]
    assert len(notes) == 1 and "docs-token=***" in notes[0]
    (line,) = [line for line in text.splitlines() if "stopped early: " in line]
    assert "docs-token=***" in line and "s3cr3t" not in line + notes[0]


def test_a_bad_log_level_stops_the_command_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SITECHAT_LOG__LEVEL is read by the CLI: a bad value is one clear error at start."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SITECHAT_LOG__LEVEL", "verbose")
    assert main(["search", "x", "--index", str(tmp_path / "none")]) == 1
    assert "SITECHAT_LOG__LEVEL" in capsys.readouterr().err


def test_json_log_format_gives_json_lines_and_main_restores_logging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SITECHAT_LOG__FORMAT=json makes every log line JSON; the root logger is left as found."""
    import logging

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SITECHAT_LOG__FORMAT", "json")
    monkeypatch.setenv("SITECHAT_LOG__LEVEL", "debug")  # asyncio logs its selector
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    assert main(["ingest", str(SAMPLE_SITE), "--index", str(tmp_path / "idx")]) == 0
    assert (root.level, list(root.handlers)) == before
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines, "DEBUG logging produced no lines"
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_the_command_line_shows_warnings_only_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without SITECHAT_LOG__LEVEL the CLI stays quiet below WARNING."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SITECHAT_LOG__LEVEL", raising=False)
    assert main(["ingest", str(SAMPLE_SITE), "--index", str(tmp_path / "idx")]) == 0
    assert capsys.readouterr().err.strip() == ""


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--max-pages", "0"], "--max-pages:"),
        (["--trusted-host", "http://docs.internal/"], "--trusted-host:"),
        (["--max-seconds", "-5"], "--max-seconds:"),
        (["--delay", "nan"], "--delay:"),
    ],
)
def test_a_bad_option_value_names_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], named: str
) -> None:
    """A bad value given on the command line is reported by its option, not by a variable
    the user never set, as bad usage (exit 2, like -k 0), and no index is made."""
    index = tmp_path / "idx"
    assert main(["ingest", str(SAMPLE_SITE), "--index", str(index), *options]) == 2
    err = capsys.readouterr().err
    assert named in err and "SITECHAT_INGEST__" not in err
    assert not index.exists()


def test_ingest_summary_names_a_start_url_that_redirected(
    sample_site: Path, tmp_path: Path
) -> None:
    """A start URL that redirects is named with where it led, masked, in text and --json."""
    shutil.copytree(sample_site, tmp_path / "site" / "guide")
    served = _serve(tmp_path / "site")
    url = next(served)
    start = url + "guide?token=s3cr3t-four"  # the server adds the slash, keeping the query
    try:
        index = str(tmp_path / "i")
        code, text = run("ingest", start, "--index", index, "--allow-private")
        code_json, out = run("ingest", start, "--index", index, "--allow-private", "--json")
    finally:
        served.close()
    assert code == code_json == 0
    moved = {"from": url + "guide?token=***", "to": url + "guide/?token=***"}
    assert json.loads(out)["crawl"]["redirects"] == [moved]
    assert f"{moved['from']} redirects to {moved['to']}: crawled from there" in text
    assert "s3cr3t" not in text + out


class _HangingPages(SimpleHTTPRequestHandler):
    """Pages that answer only once ``release`` is set: an ingest still crawling, with
    nothing stored yet. ``asked`` is set by the first page request (the crawl is under way)."""

    asked = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path in ("/robots.txt", "/sitemap.xml"):
            self.send_error(404)
            return
        self.asked.set()
        self.release.wait(60)
        self.send_error(503)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_sigterm_ends_a_first_ingest_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (`timeout`, `docker stop`, Kubernetes) mid-ingest exits 143 saying so, and
    the new index it created is removed, as for Ctrl-C."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangingPages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    index = tmp_path / "index"
    exe = Path(sys.executable).parent / "sitechat"
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        process = subprocess.Popen(
            [str(exe), "ingest", url, "--index", str(index), "--allow-private"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert _HangingPages.asked.wait(60), "the ingest never asked for a page"
        assert index.exists() and process.poll() is None
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        _HangingPages.release.set()
        server.shutdown()
        server.server_close()
    assert process.returncode == 143, err
    assert "sitechat: terminated" in err and "Traceback" not in err
    assert not index.exists()


def test_a_second_sigterm_does_not_cut_the_clean_up_short() -> None:
    """SIGTERM twice: the command is cancelled once, and its clean-up runs to the end."""
    import asyncio

    from sitechat.cli import _Terminated, _until_terminated

    cleaned: list[str] = []

    async def command() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
            return 0
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one, during the clean-up
            await asyncio.sleep(0.05)
            cleaned.append("done")

    with pytest.raises(_Terminated):
        asyncio.run(_until_terminated(command()))
    assert cleaned == ["done"]
