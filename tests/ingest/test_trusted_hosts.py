"""Trusted hosts: checked and normalised where they are set, matched as written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitechat.config import Settings
from sitechat.errors import ConfigurationError, InvalidInputError
from sitechat.ingest.crawl import CrawlOptions, crawl
from sitechat.ingest.options import normalize_trusted_host
from sitechat.ingest.transport import host_is_trusted

if TYPE_CHECKING:
    from tests.ingest.conftest import ProgrammableServer

from tests.ingest.conftest import html_reply


@pytest.mark.parametrize(
    ("entry", "normal"),
    [
        ("docs.internal", "docs.internal"),
        (" Docs.Internal. ", "docs.internal"),
        ("localhost:8000", "localhost:8000"),
        ("127.0.0.1:8000", "127.0.0.1:8000"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[FE80::1]:8443", "[fe80::1]:8443"),
        ("build_box.lan", "build_box.lan"),
    ],
)
def test_accepted_entries_are_normalised(entry: str, normal: str) -> None:
    """HOST, HOST:PORT and IPv6 forms are kept lower-case, without a trailing dot."""
    assert normalize_trusted_host(entry) == normal


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "http://localhost:8000",
        "localhost:8000/docs",
        "localhost:",
        "localhost:0",
        "localhost:99999",
        "localhost:http",
        "[::1]:",
        "[::1]x",
        "[docs.internal]:80",
        "::1:80:zz",
        "docs internal",
        "-docs.internal",
    ],
)
def test_malformed_entries_are_refused(entry: str) -> None:
    """A URL, a path, a bad port or a typo is refused with the accepted forms named."""
    with pytest.raises(ValueError, match=r"HOST:PORT"):
        normalize_trusted_host(entry)


def test_a_user_name_and_password_are_never_echoed() -> None:
    """An entry written as user:password@host is refused without showing the password."""
    with pytest.raises(ValueError, match="user name") as caught:
        normalize_trusted_host("deploy:hunter2@docs.internal")
    assert "hunter2" not in str(caught.value)


def test_crawl_options_refuse_and_normalise_entries() -> None:
    """CrawlOptions built in code get the same check as settings, and keep the normal form."""
    assert CrawlOptions(trusted_hosts=("LOCALHOST:8000",)).trusted_hosts == ("localhost:8000",)
    with pytest.raises(InvalidInputError, match=r"CrawlOptions\.trusted_hosts"):
        CrawlOptions(trusted_hosts=("https://docs.internal/",))


def test_settings_name_the_variable_of_a_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad SITECHAT_INGEST__TRUSTED_HOSTS entry fails at start, naming the variable."""
    monkeypatch.setenv("SITECHAT_INGEST__TRUSTED_HOSTS", '["https://docs.internal/"]')
    with pytest.raises(ConfigurationError, match="SITECHAT_INGEST__TRUSTED_HOSTS"):
        Settings.load(env_file=None)
    monkeypatch.setenv("SITECHAT_INGEST__TRUSTED_HOSTS", '["Docs.Internal:8080"]')
    assert Settings.load(env_file=None).ingest.trusted_hosts == ["docs.internal:8080"]


@given(
    host=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    upper=st.booleans(),
)
def test_a_normalised_entry_matches_its_own_host(host: str, port: int | None, upper: bool) -> None:
    """Whatever case an entry is written in, it trusts exactly its host (and port)."""
    written = host.upper() if upper else host
    entry = normalize_trusted_host(written if port is None else f"{written}:{port}")
    assert host_is_trusted(host, port, [entry])
    if port is not None:
        assert not host_is_trusted(host, port % 65535 + 1, [entry])
    assert not host_is_trusted(host + "x", port, [entry])


async def test_a_trusted_host_written_in_capitals_can_be_crawled(web: ProgrammableServer) -> None:
    """A private test server trusted as 127.0.0.1:PORT in any case is crawled, not refused."""
    web.routes["/"] = html_reply("<html><head><title>Home</title></head><body><p>Hi</p></body>")
    entry = web.base.removeprefix("http://").upper()
    options = CrawlOptions(trusted_hosts=(entry,), max_retries=0)
    results = [result async for result in crawl([web.base + "/"], options=options)]
    assert [result.status for result in results] == ["ok"]
