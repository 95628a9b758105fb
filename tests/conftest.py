"""Shared fixtures: an isolated environment, the bundled sample site, small settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitechat.config import Settings
from sitechat.registry import refresh

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SITE = ROOT / "examples" / "sample_site"


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
