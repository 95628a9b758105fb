"""Shared fixtures: an isolated environment, the bundled sample site, small settings, and
real documentation sites (the Python docs, the Rust book) served over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sitechat.config import Settings
from sitechat.registry import refresh
from tests.doc_sites import PYTHON_DOCS, RUST_BOOK, served

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SITE = ROOT / "examples" / "sample_site"

#: Marks for tests that crawl the Python documentation (Debian's ``python3.11-doc``).
needs_python_docs = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PYTHON_DOCS / "index.html").is_file(),
        reason="needs Debian's python3.11-doc package (apt-get install python3.11-doc)",
    ),
]


#: Marks for tests that crawl the Rust book (rustup's ``rust-docs`` component).
needs_rust_book = [
    pytest.mark.slow,
    pytest.mark.skipif(
        RUST_BOOK is None, reason="needs the Rust book (rustup component add rust-docs)"
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


@pytest.fixture(scope="session")
def python_docs_site() -> Iterator[str]:
    """The Python docs served on 127.0.0.1 at a free port."""
    with served(PYTHON_DOCS) as url:
        yield url


@pytest.fixture(scope="session")
def rust_book_site() -> Iterator[str]:
    """The Rust book served on 127.0.0.1 at a free port."""
    assert RUST_BOOK is not None
    with served(RUST_BOOK) as url:
        yield url
