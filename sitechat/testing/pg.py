"""A throwaway PostgreSQL 16 with pgvector, for tests, from the ``pgserver`` wheel.

``pip install pgserver`` brings a relocatable PostgreSQL with the ``vector`` extension, so
tests run against the real database without Docker or a system package. This module only
uses its binaries: it creates a data directory in a fresh temporary folder, starts the
server on a free TCP port of ``127.0.0.1`` with password authentication (so the DSN looks
like a production one and a wrong password really fails), and removes everything on stop::

    from sitechat.testing.pg import TemporaryPostgres

    with TemporaryPostgres() as pg:
        settings = Settings.load(vectorstore={"provider": "pgvector"}, ...)
        os.environ["SITECHAT_PGVECTOR__DSN"] = pg.dsn

In a pytest ``conftest.py``, one server for the whole session (skipped with the reason
where pgserver cannot run, e.g. Python 3.13, which it has no wheel for)::

    from sitechat.testing.pg import postgres_fixture

    postgres = postgres_fixture()          # a fixture named "postgres"

    def test_something(postgres):
        dsn = postgres.dsn

PostgreSQL refuses to run as root: run as root (a CI container), the server runs as the
system user ``pgserver`` (created if missing, as the pgserver wheel itself does), in a
directory under ``/tmp`` that user can reach. The server is tuned for tests (``fsync``
off): never keep data in it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sitechat.errors import MissingDependencyError, StoreError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "TemporaryPostgres",
    "acquire_shared_postgres",
    "pgserver_unavailable_reason",
    "postgres_fixture",
    "release_shared_postgres",
]

SERVER_SYSTEM_USER = "pgserver"
_START_ATTEMPTS = 3
_START_TIMEOUT_S = 60
# throwaway data: durability off makes DDL-heavy test suites several times faster
_TEST_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
)


def _binaries() -> Path | None:
    """The folder of pgserver's PostgreSQL programs, found without importing pgserver.

    Importing it has side effects (a runtime-directory warning, a lock file); only its
    bundled binaries are needed here.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return folder if (folder / "initdb").exists() else None


def pgserver_unavailable_reason() -> str | None:
    """Why a temporary PostgreSQL cannot start here, or None when it can."""
    if sys.platform == "win32":
        return "TemporaryPostgres supports Linux and macOS only (pgserver's Unix binaries)."
    if _binaries() is None:
        if sys.version_info >= (3, 13):
            return (
                "pgserver, which bundles PostgreSQL 16 with pgvector, has no wheel for "
                f"Python {'.'.join(map(str, sys.version_info[:2]))} (3.10-3.12 only)."
            )
        return "pgserver is not installed: pip install pgserver"
    if os.geteuid() == 0 and shutil.which("useradd") is None and not _user_exists():
        return (
            f"running as root needs the system user '{SERVER_SYSTEM_USER}' (PostgreSQL "
            "refuses root), and there is no useradd to create it."
        )
    return None


def _user_exists() -> bool:
    import pwd

    try:
        pwd.getpwnam(SERVER_SYSTEM_USER)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TemporaryPostgres:
    """A private PostgreSQL server with pgvector in a temporary directory.

    :attr:`dsn` connects as the superuser ``postgres`` with a random password. Use it as a
    context manager, or call :meth:`start` and :meth:`stop`; a server still running when
    the interpreter exits is stopped then.
    """

    def __init__(self, *, base_dir: str | Path | None = None) -> None:
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._password = secrets.token_urlsafe(18)
        self._root: Path | None = None
        self._port = 0
        self._run_as: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        self._check_running()
        return self._port

    @property
    def password(self) -> str:
        """The superuser's password."""
        return self._password

    @property
    def dsn(self) -> str:
        """``postgresql://postgres:<password>@127.0.0.1:<port>/postgres``."""
        return self.dsn_for()

    def dsn_for(
        self, *, user: str = "postgres", password: str | None = None, database: str = "postgres"
    ) -> str:
        """A DSN for another role or database of this server (the superuser by default)."""
        secret = self._password if password is None else password
        return (
            f"postgresql://{quote(user, safe='')}:{quote(secret, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(database, safe='')}"
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Create the data directory and start the server; returns ``self``."""
        with self._lock:
            if self._root is not None:
                return self
            binaries = _binaries()
            reason = pgserver_unavailable_reason()
            if binaries is None or reason is not None:
                if binaries is None:
                    raise MissingDependencyError("pgserver", "test", "TemporaryPostgres")
                raise StoreError(f"Cannot start a temporary PostgreSQL: {reason}")
            self._run_as = _server_identity()
            if self._run_as is not None:
                binaries = _reachable_copy(binaries)
            self._root = self._make_root()
            try:
                self._initdb(binaries)
                self._start_server(binaries)
            except BaseException:
                root, self._root = self._root, None
                shutil.rmtree(root, ignore_errors=True)
                raise
            atexit.register(self.stop)
            return self

    def stop(self) -> None:
        """Stop the server at once and delete its directory (idempotent)."""
        with self._lock:
            root, self._root = self._root, None
            if root is None:
                return
            atexit.unregister(self.stop)
            binaries = _binaries()
            if binaries is not None:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self._run(
                        [binaries / "pg_ctl", "-D", root / "data", "-m", "immediate", "-w", "stop"],
                        cwd=root,
                    )
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ administration

    def execute(
        self, statement: str, params: tuple[Any, ...] = (), *, database: str = "postgres"
    ) -> None:
        """Run one SQL statement as the superuser (autocommit), e.g. to create a role."""
        import psycopg

        with psycopg.connect(self.dsn_for(database=database), autocommit=True) as conn:
            # bytes: psycopg types str queries as literal SQL; this one is the caller's own
            conn.execute(statement.encode(), params)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its superuser DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(database=name)

    # ------------------------------------------------------------------ internals

    def _check_running(self) -> None:
        if self._root is None:
            raise StoreError("The temporary PostgreSQL is not running; call start() first.")

    def _make_root(self) -> Path:
        base = self._base_dir
        if base is None:
            # root's own temp dir may sit under /root, which the server user cannot enter
            base = Path("/tmp") if self._run_as is not None else Path(tempfile.gettempdir())  # noqa: S108
        root = Path(tempfile.mkdtemp(prefix="sitechat-pg-", dir=base))
        if self._run_as is not None:
            os.chown(root, *self._run_as)
        return root

    def _run(self, args: list[Any], *, cwd: Path) -> None:
        uid_gid = self._run_as
        completed = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=_START_TIMEOUT_S,
            check=False,
            user=uid_gid[0] if uid_gid else None,
            group=uid_gid[1] if uid_gid else None,
            extra_groups=[] if uid_gid else None,
        )
        if completed.returncode != 0:
            raise subprocess.CalledProcessError(
                completed.returncode, completed.args, output=completed.stdout
            )

    def _initdb(self, binaries: Path) -> None:
        assert self._root is not None
        password_file = self._root / "password"
        password_file.write_text(self._password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        if self._run_as is not None:
            os.chown(password_file, *self._run_as)
        try:
            self._run(
                [
                    binaries / "initdb",
                    "-D",
                    self._root / "data",
                    "-U",
                    "postgres",
                    f"--pwfile={password_file}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                cwd=self._root,
            )
        except subprocess.CalledProcessError as exc:
            raise StoreError(f"initdb failed for a temporary PostgreSQL: {exc.output}") from None
        finally:
            password_file.unlink(missing_ok=True)

    def _start_server(self, binaries: Path) -> None:
        assert self._root is not None
        log = self._root / "server.log"
        failure = ""
        for _ in range(_START_ATTEMPTS):  # another process may take the free port first
            port = _free_port()
            options = " ".join(
                f"-c {setting}"
                for setting in (
                    "listen_addresses=127.0.0.1",
                    f"port={port}",
                    "unix_socket_directories=''",
                    *_TEST_SETTINGS,
                )
            )
            try:
                self._run(
                    [
                        binaries / "pg_ctl",
                        "-D",
                        self._root / "data",
                        "-l",
                        log,
                        "-w",
                        "-t",
                        str(_START_TIMEOUT_S),
                        "-o",
                        options,
                        "start",
                    ],
                    cwd=self._root,
                )
            except subprocess.CalledProcessError:
                failure = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                continue
            self._port = port
            return
        raise StoreError(f"A temporary PostgreSQL did not start. Its log ends with:\n{failure}")


def _world_reachable(path: Path) -> bool:
    """Whether any user can reach ``path``: every folder on the way is world-searchable."""
    return all(os.stat(folder).st_mode & 0o001 for folder in [path, *path.parents])


def _reachable_copy(binaries: Path) -> Path:
    """``binaries``, or a world-readable copy of pgserver's install when the server user
    cannot reach it (a virtualenv inside a private folder, e.g. one made by ``mktemp -d``).

    The programs find their libraries through an RPATH relative to themselves
    (``../../../pgserver.libs``), so the copy keeps that layout. It is made once per
    installed pgserver and reused by later runs.
    """
    if _world_reachable(binaries):
        return binaries
    package = binaries.parent.parent  # .../site-packages/pgserver
    libs = package.parent / "pgserver.libs"
    stamp = f"{package.stat().st_ino}-{int((binaries / 'initdb').stat().st_mtime)}"
    target = Path("/tmp") / f"sitechat-pgserver-{stamp}"  # noqa: S108
    copied = target / "pgserver" / "pginstall" / "bin"
    if not (copied / "initdb").exists():
        staging = Path(tempfile.mkdtemp(prefix="sitechat-pgserver-", dir="/tmp"))
        staging.chmod(0o755)
        shutil.copytree(package / "pginstall", staging / "pgserver" / "pginstall", symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / "pgserver.libs", symlinks=True)
        for folder in (staging / "pgserver", *staging.glob("pgserver*")):
            folder.chmod(0o755)
        try:
            os.replace(staging, target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return copied


def _server_identity() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL as: None normally, ``pgserver`` when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SERVER_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


# ---------------------------------------------------------------------- one per process

_shared_lock = threading.Lock()
_shared: TemporaryPostgres | None = None
_shared_users = 0


def acquire_shared_postgres() -> TemporaryPostgres:
    """The process-wide temporary server, started on first use.

    Several test folders can each hold a session fixture over it and still share one
    server; it stops when the last one calls :func:`release_shared_postgres`.
    """
    global _shared, _shared_users
    with _shared_lock:
        if _shared is None:
            _shared = TemporaryPostgres().start()
        _shared_users += 1
        return _shared


def release_shared_postgres() -> None:
    """Give back a server from :func:`acquire_shared_postgres`; the last user stops it."""
    global _shared, _shared_users
    with _shared_lock:
        _shared_users = max(0, _shared_users - 1)
        if _shared_users == 0 and _shared is not None:
            server, _shared = _shared, None
            server.stop()


def postgres_fixture(
    name: str = "postgres", *, skip_if_unavailable: bool = True
) -> Callable[..., Iterator[TemporaryPostgres]]:
    """A session-scoped pytest fixture named ``name`` yielding the shared server.

    Assign it in a ``conftest.py`` (``postgres = postgres_fixture()``). Where pgserver
    cannot run the fixture skips with the reason; ``skip_if_unavailable=False`` fails
    instead, for CI that must not silently skip.
    """
    import pytest

    @pytest.fixture(scope="session", name=name)
    def fixture() -> Iterator[TemporaryPostgres]:
        reason = pgserver_unavailable_reason()
        if reason is not None:
            if skip_if_unavailable:
                pytest.skip(reason)
            pytest.fail(reason)
        server = acquire_shared_postgres()
        try:
            yield server
        finally:
            release_shared_postgres()

    return fixture
