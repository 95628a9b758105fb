"""URL identity and safety for the crawler.

Two URLs that a browser would treat as the same page must map to one string, or the
crawler fetches pages twice and the index holds duplicates; :func:`canonicalize_url`
does that mapping and is idempotent, so a canonical URL can be stored and compared.

Trailing-slash policy: the path's trailing slash is kept exactly as written, because
``/docs`` and ``/docs/`` resolve relative links differently and servers may answer them
differently; only an empty path becomes ``/``. (A server that redirects one to the other
is handled by the crawler, which records the URL it landed on.)

Safety: a crawler that follows links is a server-side request forgery tool unless it
refuses private addresses; :func:`check_public_host` does that check after DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from functools import lru_cache
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from sitechat._redact import redact
from sitechat.errors import FetchError, UnsafeURLError

__all__ = [
    "TRACKING_PARAMS",
    "canonicalize_url",
    "check_public_host",
    "host_of",
    "is_private_address",
    "normalise_path_pattern",
    "refusal",
    "require_http_url",
    "same_site",
]

#: Query parameters that only track the visitor; they never change the page.
TRACKING_PARAMS = frozenset(
    {
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "fbclid",
        "msclkid",
        "yclid",
        "twclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "ref_src",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        # Session ids: a new one per visitor, the same page behind each.
        "phpsessid",
        "jsessionid",
        "sessionid",
        "aspsessionid",
        "cfid",
        "cftoken",
    }
)

_HTTP_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_STRIP_TABLE = str.maketrans("", "", "\t\n\r")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = "/?%:@!$&'()*+,;=-._~"
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_MULTI_SLASH_RE = re.compile(r"/{2,}")
_PATH_SESSION_RE = re.compile(r";jsessionid=[^/?;]*", re.IGNORECASE)
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _fix_percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _quote(text: str, safe: str) -> str:
    """Percent-encode what must be encoded, leave existing escapes alone, normalise their case."""
    if (
        text.isascii()
        and text.isprintable()
        and not any(c in text for c in ' "<>\\^`{|}')
        and "%" not in text
    ):
        return text
    text = _PERCENT_RE.sub(_fix_percent, text)
    return quote(text, safe=safe, encoding="utf-8", errors="surrogatepass")


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


def _normalise_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if host.startswith("["):
        inner = host[1:].split("]", 1)[0]
        try:
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            return host
    if host.isascii():
        return host
    try:
        import idna

        return str(idna.encode(host, uts46=True).decode("ascii"))
    except (UnicodeError, ValueError, ImportError):
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError:
            return host


def _split_netloc(netloc: str) -> tuple[str, str]:
    """Return (host, port) from a netloc, ignoring userinfo, without ever raising."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1 :]
            return hostport[: end + 1], rest[1:] if rest.startswith(":") else ""
        return hostport, ""
    host, sep, port = hostport.rpartition(":")
    if not sep:
        return hostport, ""
    return host, port


def _clean_query(query: str, sort: bool = True) -> str:
    if not query:
        return ""
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        key = pair.split("=", 1)[0].lower()
        if key.startswith("utm_") or key in TRACKING_PARAMS:
            continue
        kept.append(_quote(pair, _QUERY_SAFE))
    if sort:
        kept.sort(key=lambda p: tuple(p.split("=", 1)))
    return "&".join(kept)


@lru_cache(maxsize=16384)
def _canonicalize_absolute(url: str, sort_query: bool = True) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in _HTTP_SCHEMES:
        return url
    host, port = _split_netloc(parts.netloc)
    host = _normalise_host(host)
    port = port.lstrip("0") or ("0" if port else "")
    if port == _DEFAULT_PORTS[scheme]:
        port = ""
    netloc = f"{host}:{port}" if port else host
    path = _quote(parts.path, _PATH_SAFE)
    if ";" in path:
        path = _PATH_SESSION_RE.sub("", path)
    path = _MULTI_SLASH_RE.sub("/", path)
    path = _remove_dot_segments(path) or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = _clean_query(parts.query, sort_query)
    return urlunsplit((scheme, netloc, path, query, ""))


def canonicalize_url(url: str, base: str | None = None, *, sort_query: bool = True) -> str:
    """Return the one spelling of ``url`` that sitechat stores and compares.

    Resolves against ``base``; lowercases scheme and host (IDNA-encoded); drops userinfo,
    default ports, the fragment and tracking parameters; sorts the query; normalises
    percent-escapes, ``.``/``..`` segments and repeated slashes. Never raises: input it
    cannot parse, and non-http(s) URLs, come back merely stripped of surrounding
    whitespace (use :func:`require_http_url` to refuse those).

    ``sort_query=False`` keeps the query parameters in the order the site wrote them:
    the URL robots.txt rules are matched against (RFC 9309), not one to compare.
    """
    url = _clean(url)
    if base is not None:
        try:
            url = _clean(_join(_clean(base), url))
        except ValueError:
            return url
    return _canonicalize_absolute(url, sort_query)


def _clean(url: str) -> str:
    """Strip surrounding whitespace and the tabs and newlines browsers ignore inside URLs."""
    url = url.strip()
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.translate(_STRIP_TABLE).strip()
    return url


@lru_cache(maxsize=1024)
def _base_parts(base: str) -> tuple[str, str, str, str] | None:
    """(scheme, scheme://netloc, path?query without fragment, directory) of an http(s) base."""
    try:
        parts = urlsplit(base)
    except ValueError:
        return None
    if parts.scheme.lower() not in _HTTP_SCHEMES or not parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path or "/"
    directory = path[: path.rfind("/") + 1]
    full = origin + path + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, origin, full, origin + directory


def _join(base: str, href: str) -> str:
    """``urljoin`` for the shapes links take, several times faster; dot segments come later."""
    if _SCHEME_RE.match(href):
        return href
    parts = _base_parts(base)
    if parts is None:
        return urljoin(base, href)
    scheme, origin, full, directory = parts
    if not href or href[0] == "#":
        return full
    if href.startswith("//"):
        return f"{scheme}:{href}"
    if href[0] == "/":
        return origin + href
    if href[0] == "?":
        return full.split("?", 1)[0] + href
    return directory + href


def normalise_path_pattern(pattern: str) -> str:
    """Percent-escapes in a path pattern (robots.txt) spelled as canonical URLs spell them."""
    return _quote(pattern, _QUERY_SAFE)


def _shown(url: str) -> str:
    """``url`` for an error message: bounded, with any credentials masked."""
    return redact(url if len(url) <= 200 else url[:200] + "…")


def require_http_url(url: str, base: str | None = None) -> str:
    """Canonicalize ``url``; raise :class:`UnsafeURLError` unless it is http(s) with a host."""
    canonical = canonicalize_url(url, base)
    try:
        parts = urlsplit(canonical)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in _HTTP_SCHEMES or not host_of(canonical):
        raise UnsafeURLError(
            f"Refusing URL {_shown(url)!r}: only http:// and https:// URLs with a host name can be "
            "crawled. For files on disk, ingest the folder instead of a URL."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        raise UnsafeURLError(
            f"Refusing URL {_shown(url)!r}: its port is not a number from 0 to 65535."
        ) from None
    return canonical


def host_of(url: str) -> str:
    """The lowercased host of ``url`` (brackets removed from IPv6), or ``""``."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ""
    host = _split_netloc(netloc)[0].lower().rstrip(".")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _site_key(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ("", "")
    host, port = _split_netloc(parts.netloc)
    host = host.lower().rstrip(".")
    host = host.removeprefix("www.")
    if port and port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        port = ""
    return host, port


def same_site(url: str, root: str) -> bool:
    """True when ``url`` has the host (and explicit port) of ``root``; ``www.`` is ignored."""
    key = _site_key(url)
    return bool(key[0]) and key == _site_key(root)


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = host.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Legacy spellings such as ``127.1`` or ``0x7f.0.0.1`` still reach loopback.
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _ip_is_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and _ip_is_private(embedded):
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_private_address(host: str) -> bool:
    """True when ``host`` is an IP literal (or ``localhost``) that is not publicly routable.

    Host names other than ``localhost`` return False: they must be resolved first, which
    :func:`check_public_host` does.
    """
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    ip = _parse_ip(name)
    return ip is not None and _ip_is_private(ip)


def refusal(host: str, detail: str) -> UnsafeURLError:
    """The one wording for a refused address: what was refused, why, and the opt-in."""
    return UnsafeURLError(
        f"Refusing to fetch from {host!r}: {detail}. sitechat does not crawl private, loopback "
        "or link-local addresses by default. For an intranet or a local server, pass "
        "allow_private=True (CLI: --allow-private)."
    )


async def check_public_host(host: str) -> None:
    """Raise :class:`UnsafeURLError` unless every address ``host`` resolves to is public.

    Raises :class:`FetchError` when the name does not resolve at all.
    """
    name = host.strip().strip("[]").lower().rstrip(".")
    if is_private_address(name):
        raise refusal(host, "it is a private or reserved address")
    if _parse_ip(name) is not None:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"Could not resolve host {host!r}: {exc}. Check the URL.") from exc
    for info in infos:
        address = str(info[4][0])
        ip = _parse_ip(address)
        if ip is None or _ip_is_private(ip):
            raise refusal(host, f"it resolves to the private or reserved address {address}")
