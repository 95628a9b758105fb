"""Fixtures for the example app: its files, a sample index, and clean Streamlit caches."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import sitechat

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "examples" / "app"
APP = APP_DIR / "app.py"
SAMPLE_SITE = ROOT / "examples" / "sample_site"


def build_index(index: Path, base_url: str | None = None) -> str:
    """Ingest the sample site into ``index`` with the offline defaults."""
    settings = sitechat.Settings.load(env_file=None, index=str(index))
    asyncio.run(sitechat.ingest(str(SAMPLE_SITE), settings=settings, base_url=base_url))
    return str(index)


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample site, ingested once per test session."""
    return build_index(tmp_path_factory.mktemp("app") / "index")


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Each test opens its own chats: cached ones are released (and closed) around it."""
    streamlit = sys.modules.get("streamlit")  # loaded by the tests that need it
    if streamlit is not None:
        streamlit.cache_resource.clear()
    yield
    streamlit = sys.modules.get("streamlit")
    if streamlit is not None:
        streamlit.cache_resource.clear()


def load_app_module(name: str) -> ModuleType:
    """Import one of the app's helper modules by path, under a name of its own."""
    module_name = f"sitechat_example_app_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, APP_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """The app installs a log handler on the root logger; take it away after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
