"""Chat overhead: what RetrievalChatService adds to the first token, alone and under load.

sitechat's own overhead for one answer is its time to first token minus the two things it
waits for: retrieval and the provider's own first token. Both are measured in this run:
retrieval from the ``DoneEvent`` timings, the provider's first token from bare
``ChatOpenAI.astream`` streams of the same prompt against the same local server (which runs in
its own process). Under load, 200 chats run at once and are compared with 200 bare client
streams at once, because at that concurrency LangChain's own per-token cost dominates.

Targets (issue 6): overhead ≤ 5 ms p50 alone, ≤ 50 ms p99 with 200 concurrent chats.

Usage: python tests/benchmarks/bench_chat.py [--runs 100] [--concurrency 200] [--tokens 50]
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
from pathlib import Path

from langchain_core.messages import BaseMessage

import sitechat
from sitechat.chat.prompts import build_messages
from sitechat.config import Settings
from sitechat.llm.openai import OpenAILLMService

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


async def _chat_once(chat: sitechat.ChatService) -> tuple[float, float]:
    """(time to first token, retrieval time) in ms for one answer."""
    start = time.perf_counter()
    first = 0.0
    retrieval = 0.0
    async for event in chat.stream_events(QUESTION):
        if isinstance(event, sitechat.TokenEvent) and not first:
            first = (time.perf_counter() - start) * 1000
        elif isinstance(event, sitechat.DoneEvent):
            retrieval = event.timings.retrieval_ms
        elif isinstance(event, sitechat.ErrorEvent):
            raise RuntimeError(event.message)
    return first, retrieval


async def _bare_once(llm: OpenAILLMService, messages: list[BaseMessage]) -> float:
    """Time to first token of the very ChatOpenAI client the provider wraps, in ms.

    The whole answer is read, as a chat does, so both put the same load on the machine.
    """
    client = llm._chat  # the LangChain client, used directly as the baseline
    start = time.perf_counter()
    first = 0.0
    async for chunk in client.astream(messages):
        if chunk.content and not first:
            first = (time.perf_counter() - start) * 1000
    return first


async def run(runs: int, concurrency: int, tokens: int) -> None:
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
                await _bare_once(llm, messages)

            chat_net: list[float] = []
            bare: list[float] = []
            retrieval: list[float] = []
            for _ in range(runs):  # interleaved, so machine noise hits both alike
                first, ret = await _chat_once(chat)
                chat_net.append(first - ret)
                retrieval.append(ret)
                bare.append(await _bare_once(llm, messages))
            alone_p50 = statistics.median(chat_net) - statistics.median(bare)
            alone_p99 = _percentile(chat_net, 0.99) - _percentile(bare, 0.99)

            loaded_bare = await asyncio.gather(
                *(_bare_once(llm, messages) for _ in range(concurrency))
            )
            loaded = await asyncio.gather(*(_chat_once(chat) for _ in range(concurrency)))
            loaded_net = [first - ret for first, ret in loaded]
            load_p50 = statistics.median(loaded_net) - statistics.median(loaded_bare)
            load_p99 = _percentile(loaded_net, 0.99) - _percentile(list(loaded_bare), 0.99)
            await chat.aclose()

        print(
            f"chat overhead benchmark: {runs} runs alone, {concurrency} concurrent, "
            f"{tokens}-token answers, local OpenAI-compatible server in its own process"
        )
        print(f"  retrieval (offline hashing + FAISS):  p50 {statistics.median(retrieval):7.2f} ms")
        print(
            f"  bare ChatOpenAI first token, alone:   p50 {statistics.median(bare):7.2f} ms"
            f"   p99 {_percentile(bare, 0.99):7.2f} ms"
        )
        print(
            f"  chat first token − retrieval, alone:  p50 {statistics.median(chat_net):7.2f} ms"
            f"   p99 {_percentile(chat_net, 0.99):7.2f} ms"
        )
        print(
            f"  => sitechat overhead alone:           p50 {alone_p50:7.2f} ms"
            f"   p99 {alone_p99:7.2f} ms   (target p50 <= 5 ms)"
        )
        print(
            f"  bare first token, {concurrency} at once:      p50 "
            f"{statistics.median(loaded_bare):7.2f} ms   p99 "
            f"{_percentile(list(loaded_bare), 0.99):7.2f} ms"
        )
        print(
            f"  chat − retrieval, {concurrency} at once:      p50 "
            f"{statistics.median(loaded_net):7.2f} ms   p99 {_percentile(loaded_net, 0.99):7.2f} ms"
        )
        print(
            f"  => sitechat overhead under load:      p50 {load_p50:7.2f} ms"
            f"   p99 {load_p99:7.2f} ms   (target p99 <= 50 ms)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.concurrency, args.tokens))


if __name__ == "__main__":
    main()
