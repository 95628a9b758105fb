"""The example plugin in examples/custom_provider installs, registers and answers on the wire."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sitechat import registry
from sitechat.config import Settings
from sitechat.errors import ModelNotFoundError
from sitechat.factories import build_llm

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_provider"


class _OllamaHandler(BaseHTTPRequestHandler):
    """Speaks Ollama's /api/chat: one JSON object per line, the last with done and counts."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["model"] == "missing":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        question = body["messages"][-1]["content"]
        for word in ["You", " asked:", f" {len(question)}", " chars."]:
            line = {"message": {"role": "assistant", "content": word}, "done": False}
            self.wfile.write(json.dumps(line).encode() + b"\n")
        done = {"message": {"content": ""}, "done": True, "prompt_eval_count": 7, "eval_count": 4}
        self.wfile.write(json.dumps(done).encode() + b"\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def ollama_url() -> Iterator[str]:
    """A local server with Ollama's wire format."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OllamaHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def installed(pip_install_into: Callable[[Path], Path]) -> Path:
    """The example package really installed by pip into a folder."""
    return pip_install_into(EXAMPLE)


@pytest.fixture
def on_path(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(installed))
    importlib.invalidate_caches()
    registry.refresh()
    yield
    sys.modules.pop("sitechat_ollama", None)
    registry.refresh()


@pytest.mark.slow
@pytest.mark.usefixtures("on_path")
async def test_example_plugin_streams_with_usage(
    ollama_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Selected by name through settings, it streams text and reports usage."""
    monkeypatch.setenv("SITECHAT_LLM__PROVIDER", "ollama")
    monkeypatch.setenv("SITECHAT_OLLAMA__BASE_URL", ollama_url)
    llm = build_llm(Settings.load(env_file=None))
    assert type(llm).__name__ == "OllamaLLMService"
    from langchain_core.messages import HumanMessage

    deltas = [d async for d in llm.stream([HumanMessage("hello")])]
    assert "".join(d.text for d in deltas) == "You asked: 5 chars."
    usage = [d.usage for d in deltas if d.usage]
    assert usage[0] is not None
    assert (usage[0].input_tokens, usage[0].output_tokens) == (7, 4)
    await llm.aclose()


@pytest.mark.slow
@pytest.mark.usefixtures("on_path")
async def test_example_plugin_maps_errors(ollama_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing model surfaces as ModelNotFoundError with the command that fixes it."""
    monkeypatch.setenv("SITECHAT_LLM__PROVIDER", "ollama")
    monkeypatch.setenv("SITECHAT_LLM__MODEL", "missing")
    monkeypatch.setenv("SITECHAT_OLLAMA__BASE_URL", ollama_url)
    llm = build_llm(Settings.load(env_file=None))
    from langchain_core.messages import HumanMessage

    with pytest.raises(ModelNotFoundError, match="ollama pull missing"):
        await llm.generate_response([HumanMessage("hello")])
    await llm.aclose()
