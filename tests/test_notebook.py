"""The example notebook runs in a real Jupyter kernel (top-level await and the sync façade)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import sitechat
from sitechat.config import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_notebook_executes_in_a_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell runs without error against an index built here, and the answers cite sources."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    index = tmp_path / "index"
    asyncio.run(
        sitechat.ingest(
            str(EXAMPLES / "sample_site"), settings=Settings.load(env_file=None, index=str(index))
        )
    )
    monkeypatch.setenv("SITECHAT_INDEX", str(index))
    monkeypatch.setenv("SITECHAT_SAMPLE_SITE", str(EXAMPLES / "sample_site"))
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [
        out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    ]
    text = "\n".join(outputs)
    assert "'added': 0" in text  # the index built above was reused, nothing re-embedded
    assert "cited: (" in text
    assert "[1]" in text
