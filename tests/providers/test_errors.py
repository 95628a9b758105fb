"""Vendor failures become sitechat errors whose messages never carry a secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import quote, quote_plus

import httpx
import openai
import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from hypothesis import given
from hypothesis import strategies as st

from sitechat._redact import RedactedException
from sitechat.errors import (
    AuthenticationError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
)
from sitechat.llm._errors import (
    MAX_RETRY_AFTER,
    format_wait,
    map_bedrock_error,
    map_openai_error,
    parse_retry_after,
    redact,
    safe_url,
)

KEY_CHARS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=8,
    max_size=40,
)


@given(secret=KEY_CHARS, before=st.text(max_size=30), after=st.text(max_size=30))
def test_redact_removes_a_known_secret_anywhere(secret: str, before: str, after: str) -> None:
    """A secret passed in never survives redaction, whatever surrounds it."""
    assert secret not in redact(before + secret + after, [secret])


@given(tail=KEY_CHARS)
def test_redact_masks_key_shaped_text_without_being_told(tail: str) -> None:
    """OpenAI-style keys and bearer tokens are masked even when not passed as secrets."""
    text = f"Incorrect API key provided: sk-{tail}. Authorization: Bearer {tail}"
    assert tail not in redact(text)


def test_redact_masks_sigv4_parts() -> None:
    """Credential, Signature and security tokens in a signed header are masked."""
    header = (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
    )
    cleaned = redact(header)
    assert "AKIAIOSFODNN7EXAMPLE" not in cleaned
    assert "fe5f80f77d5fa3be" not in cleaned


# what an AWS session token or secret is made of: base64, so / + = included
TOKEN_CHARS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+=",
    min_size=8,
    max_size=60,
)


@given(
    secret=TOKEN_CHARS,
    name=st.sampled_from(
        [
            "X-Amz-Security-Token",
            "x-amz-security-token",
            "aws_session_token",
            "Signature",
            "X-Amz-Signature",
            "Credential",
            "api_key",
            "Secret",
            "password",
            "token",
        ]
    ),
    form=st.sampled_from(
        [
            "'{name}': b'{secret}'",
            '"{name}": b"{secret}"',
            "{name}=b'{secret}'",
            "{name}: B'{secret}'",
            '{name}="{secret}"',
            "{name}:\n{secret}",
            "'{name}': '{secret}'",
            "{name}={secret}",
        ]
    ),
)
def test_redact_masks_named_values_written_as_bytes_reprs(
    secret: str, name: str, form: str
) -> None:
    """A named credential is masked whether its value is plain, quoted or a bytes repr
    (botocore's debug log prints headers as {'X-Amz-Security-Token': b'...'})."""
    line = "headers={'X-Amz-Date': b'20240101T000000Z', " + form.format(name=name, secret=secret)
    assert secret not in redact(line + ", 'Content-Type': b'application/json'}")


def test_redact_masks_botocore_signature_log_line() -> None:
    """botocore's DEBUG "Signature:" line, the hex on the next line, is masked."""
    signature = "063094c457d7a144f05baa4a6563b60e9679cd267555e8619ad05c2e5f930156"
    assert signature not in redact(f"DEBUG botocore.auth [-] Signature:\n{signature}")


@given(
    user=st.text(alphabet="abcdefghij-_.~0123456789", min_size=1, max_size=12),
    password=KEY_CHARS,
    token=KEY_CHARS,
)
def test_safe_url_drops_credentials_and_query(user: str, password: str, token: str) -> None:
    """A URL shown in a message keeps its host and path, never its password or query."""
    shown = safe_url(f"https://{user}:{password}@gateway.example:8443/v1?key={token}#x")
    assert password not in shown and token not in shown
    assert shown.startswith("https://***@gateway.example:8443/v1")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('{"TimeToFirstToken":0.12,"OutputTokens":40}', "0.12"),
        ("the token count is 40", "40"),
    ],
)
def test_redact_leaves_words_that_merely_contain_token(text: str, kept: str) -> None:
    """Metric names and prose mentioning tokens are not mistaken for credentials."""
    assert redact(text) == text and kept in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"access_token": "abc123XYZ"}',
        "api_key=abc123XYZ",
        "GET /v1?sig=abc123XYZ&x=1",
        "password: abc123XYZ",
        "aws_secret_access_key = abc123XYZ",
        "AWS_SECRET_ACCESS_KEY=abc123XYZ",
        "SECRET_KEY='abc123XYZ'",
        '{"client_secret": "abc123XYZ"}',
        "private_key: abc123XYZ",
        "DB_PASSWD=abc123XYZ",
    ],
)
def test_redact_masks_named_credentials(text: str) -> None:
    """Values named as keys, tokens, passwords or URL signatures are masked."""
    assert "abc123XYZ" not in redact(text)


def test_redact_masks_credentials_inside_quoted_urls() -> None:
    """A vendor message quoting a URL with user:password@ loses the password."""
    text = "Cannot connect to http://alice:hunter2-secret@10.0.0.1:8000/v1/chat (refused)"
    cleaned = redact(text)
    assert "hunter2-secret" not in cleaned
    assert "10.0.0.1:8000/v1/chat" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "Cannot open file:///srv/site/index.html?token%3Dabc123XYZ",
        "redirected to https://login.example/?next=https%3A%2F%2Falice%3Aabc123XYZ%40api.example%2Fv1",
        "header Authorization%3A%20Bearer%20abc123XYZ was refused",
        "GET /v1%3Fsig%3Dabc123XYZ",
        "form body api_key=abc123XYZ%21",
    ],
)
def test_redact_masks_percent_encoded_credentials(text: str) -> None:
    """A credential hidden behind percent escapes is masked like a plain one."""
    assert "abc123XYZ" not in redact(text)


@given(
    secret=st.text(alphabet="abcdefXYZ0123456789/+=@:?&", min_size=8, max_size=30),
    plus=st.booleans(),
)
def test_redact_removes_a_percent_encoded_known_secret(secret: str, plus: bool) -> None:
    """A known secret is masked in its quoted spelling too, quote or quote_plus."""
    quoted = (quote_plus if plus else quote)(secret, safe="")
    shown = redact(f"GET https://gateway.example/v1?k={quoted}&x=1 failed", [secret])
    assert quoted not in shown and secret not in shown


def test_redact_leaves_harmless_percent_escapes_alone() -> None:
    """Text with escapes but nothing secret is returned unchanged, escapes and all."""
    text = "GET https://docs.example/search?q=hello%20world&page=2 -> 100% done"
    assert redact(text) == text


# what follows a secret in prose, a list, quotes or brackets
PUNCTUATION = ".,;:!?)]}'\""
# RFC 6750's b64token, the alphabet of bearer tokens and of named tokens and API keys; a
# signed token (a JWT) ends with its signature, never with a dot
B64TOKEN = r"[A-Za-z0-9\-._~+/]*[A-Za-z0-9\-_~+/]=*"
BASE64 = r"[A-Za-z0-9+/]{8,60}={0,2}"

# each pattern: what comes before the secret, the secret's shape, and what is shown for both
SHAPED_SECRETS = {
    "OpenAI key": ("key ", r"sk-[A-Za-z0-9_\-]{6,40}", "key sk-***"),
    "bearer token": ("Authorization: Bearer ", B64TOKEN, "Authorization: Bearer ***"),
    "SigV4 signature": ("Signature=", r"[0-9a-f]{64}", "Signature=***"),
    "security token": ("X-Amz-Security-Token: ", BASE64, "X-Amz-Security-Token: ***"),
    "credential scope": (
        "Credential=",
        r"AKIA[A-Z0-9]{16}/20[0-9]{6}/[a-z]{2}-[a-z]+-[1-9]/[a-z0-9-]{2,12}/aws4_request",
        "Credential=***",
    ),
    "AWS access key id": ("key ", r"(AKIA|ASIA)[A-Z0-9]{16}", "key ***"),
    "signature in a query": (
        "GET https://api.example/v1?sig=",
        r"([A-Za-z0-9+/=_~\-]|%[0-9A-F]{2}){8,60}",
        "GET https://api.example/v1?sig=***",
    ),
    "named token": ("access_token=", B64TOKEN, "access_token=***"),
    "named API key": ("api_key: ", B64TOKEN, "api_key: ***"),
}


@st.composite
def _shaped_secret(draw: st.DrawFn) -> tuple[str, str, str]:
    before, shape, shown = SHAPED_SECRETS[draw(st.sampled_from(sorted(SHAPED_SECRETS)))]
    return before, draw(st.from_regex(shape, fullmatch=True)), shown


@given(case=_shaped_secret(), punctuation=st.sampled_from(PUNCTUATION), end=st.booleans())
def test_redact_masks_exactly_the_secret_and_keeps_the_punctuation_after_it(
    case: tuple[str, str, str], punctuation: str, end: bool
) -> None:
    """A key, token or signature followed by punctuation is masked to its last character
    ('=' padding and '/' '+' included), and the punctuation after it stays."""
    before, secret, shown = case
    after = "" if end else " and more"
    assert redact(before + secret + punctuation + after) == shown + punctuation + after


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Incorrect API key provided: sk-proj-AbC123xyz_789.",
            "Incorrect API key provided: sk-***.",
        ),
        ("token=ABC123, next", "token=***, next"),
        ("rejected (token=ABC123).", "rejected (token=***)."),
        (
            "header 'Authorization: Bearer eyJ0.eyJz.c2ln==' refused",
            "header 'Authorization: Bearer ***' refused",
        ),
        ('{"api_key": "ABC123"}', '{"api_key": "***"}'),
        ("[X-Amz-Security-Token=IQoJb3/+Jp==]", "[X-Amz-Security-Token=***]"),
        ("see `Bearer ABC123`!", "see `Bearer ***`!"),
    ],
)
def test_redact_keeps_the_quotes_and_brackets_around_a_secret(text: str, shown: str) -> None:
    """A secret quoted, bracketed or ending a sentence loses nothing but itself."""
    assert redact(text) == shown


@given(
    value=st.text(alphabet="abcXYZ0123456789-_~+/=.:!?)]}>(", min_size=1, max_size=40),
    name=st.sampled_from(["Bearer ", "token=", "Signature=", "GET /v1?key="]),
)
def test_redact_masks_punctuation_inside_a_secret(value: str, name: str) -> None:
    """Only punctuation a secret ends with is left out of the mask: none inside it, and a
    value made of nothing but punctuation is masked whole."""
    body = value.rstrip(".:!?)]}>")
    kept = value[len(body) :] if body else ""
    assert redact(f"x {name}{value} y") == f"x {name}***{kept} y"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("password: Summer2024!", "password: ***"),
        ("(client_secret=abc)", "(client_secret=***"),
        ("password=hunter2, user=alice", "password=***, user=alice"),
    ],
)
def test_redact_masks_a_password_to_its_end(text: str, shown: str) -> None:
    """A password or secret may end in any punctuation, so its trailing punctuation is
    masked with it; only a space, a comma, a semicolon or a quote ends it."""
    assert redact(text) == shown


PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"private_key: -----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----",
            "private_key: ***",
        ),
        (  # a service account's JSON: the newlines are written as \n
            f'{{"private_key": "-----BEGIN PRIVATE KEY-----\\n{PEM_BODY}\\n'
            '-----END PRIVATE KEY-----\\n", "client_email": "bot@example.com"}',
            '{"private_key": "***", "client_email": "bot@example.com"}',
        ),
        (
            f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nnext",
            "***\nnext",
        ),
        (f"cut short: '-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}' end", "cut short: '***' end"),
    ],
)
def test_redact_masks_a_whole_pem_private_key(text: str, shown: str) -> None:
    """A PEM private key is masked from its BEGIN line to its END line, named or not."""
    assert redact(text) == shown
    assert PEM_BODY not in redact(text)


def test_redact_reads_many_unfinished_pem_blocks_in_one_pass() -> None:
    """A text full of BEGIN lines with no END (a log line quoting many) is masked in one
    pass, not by scanning to the end of the text from each one: 50,000 of them (1.7 MB)
    take 0.09 s, where a scan from each would take hours and hang the suite."""
    text = '"-----BEGIN PRIVATE KEY----- abc" ' * 50_000
    assert redact(text) == '"***" ' * 50_000


def test_redact_leaves_a_pem_public_key() -> None:
    """A public key or certificate is no secret."""
    text = f"-----BEGIN PUBLIC KEY-----\n{PEM_BODY}\n-----END PUBLIC KEY-----"
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "{'AccessKeyId': 'AKID', 'SecretAccessKey': 'abc123XYZ', 'SessionToken': 'abc123XYZ'}",
        '{"SecurityToken": "abc123XYZ"}',
        "<SecretAccessKey>abc123XYZ</SecretAccessKey><SessionToken>abc123XYZ</SessionToken>",
        "<Password>abc123XYZ</Password>",
    ],
)
def test_redact_masks_botocore_credentials(text: str) -> None:
    """The temporary credentials botocore logs (a dict repr, or STS's XML) are masked."""
    assert "abc123XYZ" not in redact(text)


def test_redact_leaves_xml_elements_that_merely_contain_token() -> None:
    """A metric element is not a credential."""
    text = "<TimeToFirstToken>0.12</TimeToFirstToken><Expiration>2026-01-01</Expiration>"
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('{"password": "two words", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        ("{'password': 'two words'}", "{'password': '***'}"),
        ('{"password": "say \\"hi\\" twice", "x": 1}', '{"password": "***", "x": 1}'),
        ("{'client_secret': 'it\\'s mine'}", "{'client_secret': '***'}"),
        ('api_key="ab cd" next', 'api_key="***" next'),
        ("{'X-Amz-Security-Token': b'IQo Jb3'}", "{'X-Amz-Security-Token': b'***'}"),
        ('body {"password": "cut sho', 'body {"password": "***'),
        ('password: "two words\nnext line', 'password: "***\nnext line'),
    ],
)
def test_redact_masks_a_quoted_value_to_its_closing_quote(text: str, shown: str) -> None:
    """A quoted value is masked whole, spaces and backslash-escaped quotes included; one
    with no closing quote is masked to the end of its line."""
    assert redact(text) == shown


@given(
    value=st.text(min_size=1, max_size=40),
    name=st.sampled_from(["password", "api_key", "client_secret", "access_token", "PGPASSWORD"]),
    spell=st.sampled_from([json.dumps, repr]),
)
def test_redact_masks_any_string_after_a_credential_name_in_json_or_a_repr(
    value: str, name: str, spell: Callable[[object], str]
) -> None:
    """Whatever a credential's string holds, JSON or a Python repr shows it as a masked
    string and the rest of the object as it was."""
    quote = spell(value)[0]
    shown = f"{{{spell(name)}: {quote}***{quote}, {spell('user')}: {spell('bob')}}}"
    assert redact(spell({name: value, "user": "bob"})) == shown


def test_redact_keeps_the_escape_of_a_quote_after_a_value() -> None:
    """A value that runs to a quote stops before a backslash escaping one, so text that
    is JSON (a JSON log line) stays JSON."""
    line = json.dumps({"message": 'retry with "token=abc123" and "password=hunter2"'})
    assert json.loads(redact(line)) == {"message": 'retry with "token=***" and "password=***"'}


@pytest.mark.parametrize(
    "text",
    [
        "PGPASSWORD=abc123XYZ psql -h db",
        "MYSQL_PWD=abc123XYZ",
        "REDIS_PASSWORD=abc123XYZ",
        "DB_PASS: abc123XYZ",
        "MYSQL_ROOT_PASSWORD='abc123XYZ'",
        "{'db-pass': 'abc123XYZ'}",
    ],
)
def test_redact_masks_environment_variable_passwords(text: str) -> None:
    """Passwords named as environment variables are, glued (PGPASSWORD) or ending a
    snake_case name (MYSQL_PWD, DB_PASS), masked."""
    assert "abc123XYZ" not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "passthrough=yes bypass=1 compass: north passage=3",
        "tests pass: 3, PWD=/srv/app OLDPWD=/srv",
        "pwd: /home/me",
    ],
)
def test_redact_leaves_words_that_merely_contain_pass(text: str) -> None:
    """Words holding "pass" and the working directory are not taken for passwords."""
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
        ("authorization: Token abc123XYZ, next", "authorization: Token ***, next"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNz.", "Proxy-Authorization: Basic ***."),
        ("{'Authorization': b'Basic dXNl cjpw'}", "{'Authorization': b'Basic ***'}"),
        ('{"authorization": "Token abc123XYZ"}', '{"authorization": "Token ***"}'),
        (
            'Authorization: Digest username="bob", nonce="n1", response="abc123XYZ" sent',
            "Authorization: Digest *** sent",
        ),
        ("Authorization: abc123XYZ", "Authorization: ***"),
    ],
)
def test_redact_masks_the_credentials_of_any_authorization_scheme(text: str, shown: str) -> None:
    """An Authorization or Proxy-Authorization header's credentials are masked whatever
    the scheme, and the scheme stays readable."""
    assert redact(text) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "GET https://user:p@ss:w0rd@api.example/v1 failed",
            "GET https://***@api.example/v1 failed",
        ),
        ("https://u:a@b@c@api.example?next=x@y#z@w", "https://***@api.example?next=x@y#z@w"),
        ("redis://:p@ss@cache:6379/0", "redis://***@cache:6379/0"),
    ],
)
def test_redact_masks_a_url_password_holding_an_at_sign(text: str, shown: str) -> None:
    """A URL's userinfo is masked up to the last "@" before its host, not the first."""
    assert redact(text) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "git clone https://ghp_abc123XYZ@github.com/org/repo.git",
            "git clone https://***@github.com/org/repo.git",
        ),
        (
            "https://oauth2:glpat-abc123XYZ@gitlab.example/org/repo.git",
            "https://***@gitlab.example/org/repo.git",
        ),
        ("GET http://alice@gateway.example:8080/v1", "GET http://***@gateway.example:8080/v1"),
    ],
)
def test_redact_masks_the_userinfo_of_an_http_url(text: str, shown: str) -> None:
    """In an http(s) URL, userinfo without a password is masked too: it is a token as
    often as a name (a git clone URL)."""
    assert redact(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "write to <mailto:docs@example.com> or docs@example.com",
        "ssh://git@github.com/org/repo.git and git@github.com:org/repo.git",
        "postgresql://app@db.internal:5432/sitechat",
        "https://medium.com/@author/post?by=a@b.example",
    ],
)
def test_redact_leaves_email_addresses_and_usernames_outside_http_urls(text: str) -> None:
    """An email address, an SSH or database user name, and an "@" after the host are no
    secrets."""
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Incorrect API key provided: gw-QUOTED123xyz. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "Incorrect API key provided: ***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
        ),
        ("Incorrect API key provided: 'my key'", "Incorrect API key provided: '***'"),
        ("Incorrect API key provided: sk-proj-AbC123xyz.", "Incorrect API key provided: sk-***."),
    ],
)
def test_redact_masks_any_key_openai_quotes_back(text: str, shown: str) -> None:
    """The key after OpenAI's "Incorrect API key provided:" is masked whatever its shape."""
    assert redact(text) == shown


# each about 100 KB: a pattern that backtracked over the text from each position would
# take some 10^10 steps on one of these, minutes at the least
HOSTILE_TEXTS = {
    "separators": ("=:, ;" * 20_000, None),
    "one long snake_case word": ("a_" * 50_000, None),
    "kebab-case words": ("a-" * 50_000, None),
    "glued pass": ("pass" * 25_000, None),
    "snake_case pass": ("x_pass" * 16_666, None),
    "spaces after a name": ("password" + " " * 100_000, None),
    "quotes after names": ('password: "' * 9_090, 'password: "***"' * 4_545),
    "escaped quotes after names": ('password="\\" ' * 7_692, 'password="***"\\" ' * 3_846),
    "an unfinished quote": ('password: "' + "a b " * 25_000, 'password: "***'),
    "escaped quotes in an unfinished one": ("{'token': '" + "\\'" * 50_000, "{'token': '***"),
    "slashes": ("//" * 50_000, None),
    "at signs in an authority": ("https://" + "@" * 100_000, "https://***@"),
    "colons in an authority": ("//" + "a:" * 50_000, None),
    "authorization names": ("Authorization: " * 6_666, "Authorization: ***: " * 3_333),
    "spaces after authorization": ("Authorization:" + " " * 100_000, None),
    "digest parameters": (
        "Authorization: Digest " + "a=b, " * 20_000,
        "Authorization: Digest ***, ",
    ),
    "equals signs in a parameter": (
        "Authorization: Digest " + "a=" * 50_000,
        "Authorization: Digest ***",
    ),
    "an unfinished quoted scheme": (
        "'Authorization': 'Basic " + "a " * 50_000,
        "'Authorization': 'Basic ***",
    ),
    "api key provided": (
        "API key provided: " * 5_554,
        "API key provided: *** key provided: " * 2_777,
    ),
    "a long run without an escape": ("%zz" + "a" * 100_000, None),
    "trailing punctuation": ("token=" + "." * 100_000, "token=***"),
}


@pytest.mark.parametrize(("text", "shown"), list(HOSTILE_TEXTS.values()), ids=list(HOSTILE_TEXTS))
def test_redact_reads_hostile_text_in_linear_time(text: str, shown: str | None) -> None:
    """100 KB of repeated separators, names, quotes or "@" is masked in one pass (None:
    left as it is); a pattern backtracking over it from each position would keep the
    suite from finishing."""
    assert redact(text) == (text if shown is None else shown)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_reads_seconds_and_milliseconds(
    headers: dict[str, str], expected: float | None
) -> None:
    """Retry-After in seconds, retry-after-ms first, garbage ignored."""
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_parse_retry_after_reads_an_http_date() -> None:
    """An HTTP date becomes the seconds left until then."""
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    seconds = parse_retry_after(httpx.Headers({"retry-after": when}))
    assert seconds is not None
    assert 20 < seconds <= 30


@pytest.mark.parametrize(
    "header",
    [
        {"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"},
        {"retry-after": "99999999999"},
        {"retry-after-ms": "1e15"},
    ],
)
def test_parse_retry_after_caps_a_wait_beyond_a_day(header: dict[str, str]) -> None:
    """A Retry-After years ahead (a date, seconds or milliseconds) counts as one day."""
    assert parse_retry_after(httpx.Headers(header)) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(1.25, "1.2s"), (30.0, "30s"), (90.0, "2 min"), (5400.0, "1.5 h"), (86_400.0, "24 h")],
)
def test_format_wait_reads_as_seconds_minutes_or_hours(seconds: float, shown: str) -> None:
    """A wait in a message reads like one, never as 2.3e+09s."""
    assert format_wait(seconds) == shown


def _status_error(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(status, json=body, headers=headers, request=request)
    cls = {429: openai.RateLimitError, 401: openai.AuthenticationError}.get(
        status, openai.APIStatusError
    )
    return cls("failed", response=response, body=body)  # type: ignore[arg-type]


def test_insufficient_quota_is_not_treated_as_a_retryable_rate_limit() -> None:
    """429 insufficient_quota means billing, not throttling: a permission error."""
    error = map_openai_error(
        _status_error(429, {"error": {"message": "quota", "code": "insufficient_quota"}})
    )
    assert isinstance(error, PermissionDeniedError)
    assert not error.retryable


def test_openai_unknown_status_by_range() -> None:
    """An unlisted 5xx is service-unavailable; 408 a timeout."""
    assert isinstance(map_openai_error(_status_error(502, {})), ServiceUnavailableError)
    assert isinstance(map_openai_error(_status_error(408, {})), ProviderTimeoutError)


def test_unexpected_exceptions_become_provider_errors_without_secrets() -> None:
    """Anything unknown is still a ProviderError, with secrets redacted from its text."""
    error = map_openai_error(
        RuntimeError("boom with sk-abcdef0123456789"), secrets=["sk-abcdef0123456789"]
    )
    assert type(error) is ProviderError
    assert "sk-abcdef0123456789" not in str(error)


def test_the_vendor_exception_is_retold_redacted_as_the_cause() -> None:
    """The mapped error's cause names the vendor's exception and message, secrets masked,
    with the vendor's own chain retold the same way."""
    key = "gw-QUOTEDKEY0123456789"
    try:
        try:
            raise ConnectionError(f"inner {key}")
        except ConnectionError as inner:
            raise RuntimeError(f"Incorrect API key provided: {key}") from inner
    except RuntimeError as exc:
        vendor = exc
    error = map_openai_error(vendor, secrets=[key])
    cause = error.__cause__
    assert isinstance(cause, RedactedException)
    assert str(cause) == "builtins.RuntimeError: Incorrect API key provided: ***"
    assert cause.__traceback__ is vendor.__traceback__
    assert str(cause.__cause__) == "builtins.ConnectionError: inner ***"
    assert cause.__cause__.__cause__ is None


def _client_error(code: str, status: int, message: str = "m") -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "ConverseStream")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ExpiredTokenException", 403, AuthenticationError),
        ("ServiceQuotaExceededException", 400, RateLimitError),
        ("ModelNotReadyException", 429, RateLimitError),
        ("ModelTimeoutException", 408, ProviderTimeoutError),
        ("ValidationException", 400, ModelNotFoundError),
    ],
)
def test_bedrock_codes_map_by_name_then_status(
    code: str, status: int, expected: type[ProviderError]
) -> None:
    """Error codes decide first; the HTTP status covers codes not listed."""
    message = "The provided model identifier is invalid." if expected is ModelNotFoundError else "m"
    assert type(map_bedrock_error(_client_error(code, status, message))) is expected


def test_no_credentials_explains_the_chain() -> None:
    """A missing credential chain is an authentication error naming where AWS looks."""
    error = map_bedrock_error(NoCredentialsError())
    assert isinstance(error, AuthenticationError)
    assert "AWS_PROFILE" in str(error)
