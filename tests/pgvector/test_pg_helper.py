"""The throwaway-PostgreSQL helper that sitechat's and users' tests share."""

from __future__ import annotations

import sys

import psycopg
import pytest

from sitechat.errors import StoreError
from sitechat.testing import pg as pg_helper
from sitechat.testing.pg import TemporaryPostgres, pgserver_unavailable_reason


def test_shared_server_takes_passwords_over_tcp(postgres: TemporaryPostgres) -> None:
    """The DSN is a password login on 127.0.0.1; a wrong password is refused."""
    assert postgres.dsn.startswith("postgresql://postgres:")
    assert "@127.0.0.1:" in postgres.dsn
    with psycopg.connect(postgres.dsn) as conn:
        available = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    assert available is not None
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.dsn_for(password="not-the-password"))


def test_shared_server_is_reference_counted(postgres: TemporaryPostgres) -> None:
    """Acquiring the shared server again returns the running one; releasing keeps it up."""
    again = pg_helper.acquire_shared_postgres()
    try:
        assert again is postgres
    finally:
        pg_helper.release_shared_postgres()
    assert postgres.port > 0


def test_unavailable_reason_names_python_3_13(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pgserver has no wheel, the skip reason says so instead of failing obscurely."""
    monkeypatch.setattr(pg_helper, "_binaries", lambda: None)
    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    reason = pgserver_unavailable_reason()
    assert reason is not None
    assert "3.13" in reason


def test_unavailable_reason_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below 3.13 a missing pgserver is reported with the install command."""
    monkeypatch.setattr(pg_helper, "_binaries", lambda: None)
    monkeypatch.setattr(sys, "version_info", (3, 12, 1, "final", 0))
    assert pgserver_unavailable_reason() == "pgserver is not installed: pip install pgserver"


def test_stopped_helper_refuses_addresses() -> None:
    """An unstarted server has no DSN to hand out, and stopping it is harmless."""
    server = TemporaryPostgres()
    server.stop()
    with pytest.raises(StoreError, match="not running"):
        _ = server.dsn
