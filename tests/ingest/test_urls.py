"""URL canonicalization, scope and private-address checks."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitechat.errors import FetchError, UnsafeURLError
from sitechat.ingest.urls import (
    canonicalize_url,
    check_public_host,
    host_of,
    is_private_address,
    require_http_url,
    same_site,
)

_url_chars = st.text(
    alphabet=st.sampled_from(list("aAbB09-._~%/?#&=:@[]!$'()*+,; \t\nüß\u00e9\x00\x7f/..")),
    max_size=40,
)


@st.composite
def http_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "hTTps"]))
    userinfo = draw(st.sampled_from(["", "user@", "u:p@"]))
    host = draw(
        st.sampled_from(
            ["example.com", "Example.COM", "www.x.org", "bücher.de", "127.0.0.1", "[::1]", "x", ""]
        )
    )
    port = draw(st.sampled_from(["", ":80", ":443", ":8080", ":0080", ":abc", ":"]))
    path = draw(_url_chars)
    return f"{scheme}://{userinfo}{host}{port}/{path}"


@given(http_urls())
@settings(max_examples=400)
def test_canonicalize_is_idempotent_on_http_urls(url: str) -> None:
    """Canonicalizing a canonical URL changes nothing, whatever junk the input held."""
    once = canonicalize_url(url)
    assert canonicalize_url(once) == once


@given(st.text(max_size=60), st.one_of(st.none(), http_urls()))
@settings(max_examples=300)
def test_canonicalize_never_raises_and_is_idempotent_on_any_text(
    url: str, base: str | None
) -> None:
    """Arbitrary text, with or without a base, never raises and canonicalizes idempotently."""
    once = canonicalize_url(url, base)
    assert canonicalize_url(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("http://user:secret@example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a#section", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com/a/./b/../c//d", "http://example.com/a/c/d"),
        ("http://example.com/docs/", "http://example.com/docs/"),
        ("http://example.com/docs", "http://example.com/docs"),
        (
            "http://example.com/?utm_source=x&b=2&fbclid=1&a=1&gclid=z",
            "http://example.com/?a=1&b=2",
        ),
        ("http://example.com/?UTM_Medium=x", "http://example.com/"),
        ("http://example.com/a%7eb%2fc d", "http://example.com/a~b%2Fc%20d"),
        ("https://bücher.de/straße", "https://xn--bcher-kva.de/stra%C3%9Fe"),
        ("http://EXAMPLE.com./x", "http://example.com/x"),
        ("http://[0:0:0:0:0:0:0:1]:8000/", "http://[::1]:8000/"),
    ],
)
def test_canonicalize_examples(raw: str, expected: str) -> None:
    """Each documented normalisation is applied."""
    assert canonicalize_url(raw) == expected


def test_canonicalize_resolves_relative_links() -> None:
    """Relative links resolve against the base, including ``..`` and protocol-relative ones."""
    base = "https://example.com/guide/install/index.html"
    assert canonicalize_url("../api.html#x", base) == "https://example.com/guide/api.html"
    assert canonicalize_url("//cdn.example.org/a", base) == "https://cdn.example.org/a"
    assert canonicalize_url("?q=1", base) == "https://example.com/guide/install/index.html?q=1"


def test_require_http_url_refuses_other_schemes() -> None:
    """Non-http(s) URLs and URLs without a host are refused with a message saying why."""
    for bad in ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "http://", "x"]:
        with pytest.raises(UnsafeURLError, match="only http"):
            require_http_url(bad)
    assert require_http_url("HTTPS://Example.com") == "https://example.com/"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/", "http://127.0.0.1:abc/", "https://[::1]:65536/x"]
)
def test_require_http_url_refuses_bad_ports(url: str) -> None:
    """A port that is not 0-65535 is refused as an unsafe URL, naming it, not a crash."""
    with pytest.raises(UnsafeURLError, match=r"Refusing URL .*port"):
        require_http_url(url)


def test_same_site_ignores_www_and_default_ports() -> None:
    """``www.`` and default ports do not change the site; other hosts and ports do."""
    assert same_site("https://www.example.com/a", "http://example.com/")
    assert same_site("https://example.com:443/a", "https://example.com/")
    assert not same_site("https://docs.example.com/", "https://example.com/")
    assert not same_site("http://example.com:8080/", "http://example.com/")
    assert not same_site("mailto:a@example.com", "http://example.com/")
    assert host_of("http://[::1]:80/") == "::1"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "[::1]",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "localhost",
        "api.localhost",
    ],
)
def test_private_addresses_are_recognised(host: str) -> None:
    """Loopback, private, link-local, shared, multicast, reserved, mapped: all private."""
    assert is_private_address(host)


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "example.com"])
def test_public_addresses_and_names_are_not_private(host: str) -> None:
    """Public IPs, and names (which need resolving), are not called private."""
    assert not is_private_address(host)


async def test_check_public_host_refuses_loopback_with_advice() -> None:
    """A loopback literal is refused and the message names the host and the opt-in."""
    with pytest.raises(UnsafeURLError, match="allow_private=True") as info:
        await check_public_host("127.0.0.1")
    assert "127.0.0.1" in str(info.value)
    assert "--allow-private" in str(info.value)


async def test_check_public_host_resolves_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name is resolved and refused when any of its addresses is private."""
    loop = asyncio.get_running_loop()
    answers = {
        "public.test": ["93.184.216.34"],
        "sneaky.test": ["93.184.216.34", "::ffff:192.168.0.1"],
    }

    async def fake_getaddrinfo(host: str, port: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in answers[host]]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    await check_public_host("public.test")
    with pytest.raises(UnsafeURLError, match=r"192\.168\.0\.1"):
        await check_public_host("sneaky.test")
    with pytest.raises(FetchError, match="Could not resolve"):
        await check_public_host("missing.test")
