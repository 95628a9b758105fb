"""Shared fixtures: an isolated environment, the bundled sample site, small settings, and
the Python documentation served as a real site."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sitechat.config import Settings
from sitechat.registry import refresh

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SITE = ROOT / "examples" / "sample_site"
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")

#: Marks for tests that crawl the Python documentation (Debian's ``python3.11-doc``).
needs_python_docs = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PYTHON_DOCS / "index.html").is_file(),
        reason="needs Debian's python3.11-doc package (apt-get install python3.11-doc)",
    ),
]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's SITECHAT_* variables, OpenAI key or .env file."""
    for key in list(os.environ):
        if key.startswith(("SITECHAT_", "OPENAI_", "AWS_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    refresh()
    yield
    refresh()


@pytest.fixture
def sample_site() -> Path:
    """The demo documentation site that ships in examples/."""
    return SAMPLE_SITE


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with the index in a temporary directory."""
    return Settings.load(env_file=None, index=str(tmp_path / "index"))


@pytest.fixture(scope="session")
def pip_install_into(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """Really install a local package with pip (no network, no deps) into a fresh folder."""

    def install(package_dir: Path) -> Path:
        target = tmp_path_factory.mktemp(package_dir.name)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--target",
                str(target),
                str(package_dir),
            ],
            check=True,
            capture_output=True,
        )
        return target

    return install


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="session")
def python_docs_site() -> Iterator[str]:
    """The Python docs served on 127.0.0.1 at a free port, as ``python -m http.server`` would."""
    handler = partial(_QuietHandler, directory=str(PYTHON_DOCS))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
