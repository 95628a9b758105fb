"""A plugin author's failing conformance test shows the values, as pytest does for asserts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BROKEN_STORE = """
from typing import ClassVar

import pytest

from sitechat.testing import InMemoryVectorStore
from sitechat.testing.conformance import VectorStoreConformance


class WorstFirstStore(InMemoryVectorStore):
    name: ClassVar[str] = "worst-first"

    async def search(self, vector, k=5, where=None):
        return list(reversed(await super().search(vector, k, where)))


class TestWorstFirst(VectorStoreConformance):
    persists_across_reopen = False

    @pytest.fixture
    def open_store(self):
        async def open_store(embedder, *, create):
            return await WorstFirstStore.open(None, embedder, create=create)

        return open_store
"""


@pytest.mark.slow
def test_a_failing_kit_assertion_reports_the_differing_values(tmp_path: Path) -> None:
    """A store returning hits worst-first fails with both chunk ids shown, not a bare
    AssertionError: the kit's asserts are rewritten like a test module's."""
    (tmp_path / "test_plugin_store.py").write_text(textwrap.dedent(BROKEN_STORE))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-k",
            "nearest_first",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout
    assert "AssertionError: assert 'config' == 'install-linux'" in result.stdout, result.stdout
