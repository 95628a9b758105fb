"""Chat overhead: what RetrievalChatService adds to the first token, alone and under load.

sitechat's own overhead for one answer is its time to first token minus the two things it
waits for: retrieval and the provider's own first token. The baseline does exactly those
two things and nothing else: ``HybridRetriever.retrieve`` on the same index, then a bare
``ChatOpenAI.astream`` of the same prompt (the very client the provider wraps), against
the same local OpenAI-compatible server in its own process. The difference between a
chat's first token and the baseline's is what the chat service itself costs: prompt and
sources, the event stream, the provider wrapper and its retry guard.

Under load, 200 chats are launched at once and compared with 200 baselines launched at
once; every request is timed from the launch, so waiting for the event loop counts for
both (at that concurrency LangChain's own per-token cost dominates). Bursts alternate,
and the figures are medians over rounds.

Targets (issue 6): overhead ≤ 5 ms p50 alone, ≤ 50 ms p99 with 200 concurrent chats.

Usage: python tests/benchmarks/bench_chat.py [--runs 100] [--concurrency 200] [--tokens 50]
       [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from langchain_core.messages import BaseMessage

import sitechat
from sitechat.chat.prompts import build_messages
from sitechat.config import Settings
from sitechat.llm.openai import OpenAILLMService
from sitechat.retrieval.hybrid import HybridRetriever

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How do I delete my account?"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _start_server(tokens: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sitechat.testing.openai_server",
            "--port",
            str(port),
            "--reply-tokens",
            str(tokens),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/v1"


async def _chat_once(chat: sitechat.ChatService, launched: float | None = None) -> float:
    """Time to first token of one answer in ms, from ``launched`` (default: now)."""
    start = time.perf_counter() if launched is None else launched
    first = 0.0
    async for event in chat.stream_events(QUESTION):
        if isinstance(event, sitechat.TokenEvent) and not first:
            first = (time.perf_counter() - start) * 1000
        elif isinstance(event, sitechat.ErrorEvent):
            raise RuntimeError(event.message)
    return first


async def _baseline_once(
    retriever: HybridRetriever,
    llm: OpenAILLMService,
    messages: list[BaseMessage],
    launched: float | None = None,
) -> tuple[float, float]:
    """(first token, retrieval) in ms: retrieval, then the bare client's stream.

    The whole answer is read, as a chat does, so both put the same load on the machine.
    """
    client = llm._chat  # the LangChain client, used directly as the baseline
    start = time.perf_counter() if launched is None else launched
    await retriever.retrieve(QUESTION)
    retrieved = (time.perf_counter() - start) * 1000
    first = 0.0
    async for chunk in client.astream(messages):
        if chunk.content and not first:
            first = (time.perf_counter() - start) * 1000
    return first, retrieved


async def _burst(
    chat: sitechat.RetrievalChatService, messages: list[BaseMessage], concurrency: int
) -> tuple[list[float], list[float]]:
    """First-token times of ``concurrency`` baselines, then of as many chats, all at once."""
    assert isinstance(chat.llm, OpenAILLMService)
    launched = time.perf_counter()
    base = await asyncio.gather(
        *(_baseline_once(chat.retriever, chat.llm, messages, launched) for _ in range(concurrency))
    )
    launched = time.perf_counter()
    chats = await asyncio.gather(*(_chat_once(chat, launched) for _ in range(concurrency)))
    return [first for first, _ in base], list(chats)


def _row(label: str, values: Sequence[float], target: str = "") -> str:
    p50, p99 = statistics.median(values), _percentile(values, 0.99)
    return f"  {label:<42} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   {target}".rstrip()


async def run(runs: int, concurrency: int, tokens: int, load_rounds: int = 5) -> None:
    proc, base_url = _start_server(tokens)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings.load(env_file=None, index=f"{tmp}/index")
            await sitechat.ingest(str(ROOT / "examples" / "sample_site"), settings=settings)
            llm = OpenAILLMService(model="bench", api_key="sk-bench", base_url=base_url)
            chat = await sitechat.open_chat(settings=settings)
            assert isinstance(chat, sitechat.RetrievalChatService)
            chat.llm = llm
            hits = (await chat.retriever.retrieve(QUESTION)).hits
            sources = [
                sitechat.Source(n=i, title=h.chunk.title, url=h.chunk.link, snippet="", score=0)
                for i, h in enumerate(hits, 1)
            ]
            messages = build_messages(QUESTION, sources, [h.chunk.text for h in hits], [])

            for _ in range(5):  # warm up connections and caches
                await _chat_once(chat)
                await _baseline_once(chat.retriever, llm, messages)

            alone_chat: list[float] = []
            alone_base: list[float] = []
            retrieval: list[float] = []
            for _ in range(runs):  # interleaved, so machine noise hits both alike
                alone_chat.append(await _chat_once(chat))
                first, retrieved = await _baseline_once(chat.retriever, llm, messages)
                alone_base.append(first)
                retrieval.append(retrieved)
            alone = [c - b for c, b in zip(sorted(alone_chat), sorted(alone_base), strict=True)]

            rounds = [await _burst(chat, messages, concurrency) for _ in range(load_rounds)]
            await chat.aclose()

        def over_rounds(pick: Callable[[list[float], list[float]], float]) -> float:
            return statistics.median(pick(b, c) for b, c in rounds)

        print(
            f"chat overhead benchmark: {runs} runs alone, {concurrency} concurrent x "
            f"{load_rounds} rounds, {tokens}-token answers, local OpenAI-compatible server "
            "in its own process"
        )
        print(_row("retrieval alone (offline default, FAISS)", retrieval))
        print(_row("baseline alone (retrieval + bare client)", alone_base))
        print(_row("chat alone", alone_chat))
        print(_row("=> sitechat overhead alone", alone, "(target p50 <= 5 ms)"))
        print(f"  {concurrency} at once (medians over {load_rounds} rounds):")
        p50 = over_rounds(lambda b, c: statistics.median(b))
        p99 = over_rounds(lambda b, c: _percentile(b, 0.99))
        print(f"  {'baseline':<42} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms")
        p50 = over_rounds(lambda b, c: statistics.median(c))
        p99 = over_rounds(lambda b, c: _percentile(c, 0.99))
        print(f"  {'chat':<42} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms")
        p50 = over_rounds(lambda b, c: statistics.median(c) - statistics.median(b))
        p99 = over_rounds(lambda b, c: _percentile(c, 0.99) - _percentile(b, 0.99))
        print(
            f"  {'=> sitechat overhead under load':<42} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms"
            "   (target p99 <= 50 ms)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="bursts under load")
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.concurrency, args.tokens, args.rounds))


if __name__ == "__main__":
    main()
