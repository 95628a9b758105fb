"""Parsing SITECHAT_PGVECTOR__DSN: pure parsing, no server needed, so these always run."""

from __future__ import annotations

import pytest

from sitechat.errors import ConfigurationError
from sitechat.vectorstores._pg_db import parse_target

SECRET = "SECRETPW"


@pytest.mark.parametrize(
    "dsn",
    [
        # a '/' in the password: libpq reads host 'postgres', port 'SEC', database 'RETPW@...'
        "postgresql://postgres:SEC/RETPW@127.0.0.1:57417/postgres",
        # an '@' in the password: libpq reads host 'RETPW@127.0.0.1'
        "postgresql://postgres:SEC@RETPW@127.0.0.1:57417/postgres",
        # no '@' after the password: libpq reads port 'SECRETPW127.0.0.1:57417'
        "postgresql://postgres:SECRETPW127.0.0.1:57417/postgres",
        # an all-digit password before a '/': the port parses, the database holds the rest
        "postgresql://postgres:1234/SECRETPW@127.0.0.1:5432/postgres",
        "postgres://postgres:SEC/RETPW@db.example.com/app",
    ],
)
def test_malformed_dsn_is_refused_without_echoing_any_part(dsn: str) -> None:
    """A DSN that does not parse cleanly is a ConfigurationError quoting none of it."""
    with pytest.raises(ConfigurationError) as caught:
        parse_target(dsn)
    message = str(caught.value)
    assert "malformed" in message
    assert "percent-encode" in message
    for piece in ("SEC", "RETPW", "127.0.0.1", "57417", "db.example.com", "1234"):
        assert piece not in message
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("dsn", "host", "port", "dbname"),
    [
        (
            "postgresql://postgres:SEC%2FRET%40PW@127.0.0.1:57417/postgres",
            "127.0.0.1",
            "57417",
            "postgres",
        ),
        ("postgresql://u:pa:ss@host/db", "host", "5432", "db"),
        ("postgresql://u:p@h1:5432,h2:5433/db", "h1,h2", "5432,5433", "db"),
        ("postgresql://u:p@[::1]/db", "::1", "5432", "db"),
        ("postgresql://u@h/db?password=x/y@z", "h", "5432", "db"),
        ("postgresql://u:p@/db?host=/var/run/postgresql", "/var/run/postgresql", "5432", "db"),
        ("host=db port=5433 dbname=app user=u password=a@b/c", "db", "5433", "app"),
    ],
)
def test_well_formed_dsns_still_parse(dsn: str, host: str, port: str, dbname: str) -> None:
    """Percent-encoded passwords, host lists, IPv6, sockets and key=value forms are accepted."""
    target = parse_target(dsn)
    assert (target.host, target.port, target.dbname) == (host, port, dbname)


def test_percent_encoded_password_is_redacted_in_every_form() -> None:
    """The decoded password and its percent-encoded spelling are both masked."""
    target = parse_target("postgresql://postgres:SEC%2FRET%40PW@127.0.0.1:57417/postgres")
    assert target.password == "SEC/RET@PW"
    text = "password SEC/RET@PW in postgresql://postgres:SEC%2FRET%40PW@127.0.0.1/x"
    assert "SEC" not in target.redact(text)
    assert SECRET not in target.describe()
