"""Time to first token and tokens/s: raw SSE reader vs ChatOpenAI.astream vs sitechat's provider.

All clients stream the same long answer from the same local OpenAI-compatible server, which
runs in its own process so that it does not compete with the clients for the GIL. Runs are
interleaved (one of each client per round, the order rotating) so machine noise hits every
client alike; the medians are printed with the ratios issue 3 sets targets for:

* sitechat adds at most 1 ms to ChatOpenAI's time to first token, and
* keeps at least 0.9x its throughput.

"ChatOpenAI (as sitechat sets it up)" is the very client object the provider wraps, so the
difference to the provider row is exactly sitechat's own overhead. "ChatOpenAI (defaults)"
shows what LangChain's default per-chunk timer costs, for reference.

Usage: python tests/benchmarks/bench_llm_stream.py [--runs 15] [--tokens 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from sitechat.llm.openai import OpenAILLMService

MESSAGES = [HumanMessage("Stream me a long answer.")]
KEY = "sk-bench"


@dataclass
class Sample:
    first_token_ms: float
    tokens_per_second: float


async def _measure(tokens: AsyncIterator[str]) -> Sample:
    start = time.perf_counter()
    first = 0.0
    count = 0
    async for _ in tokens:
        if count == 0:
            first = time.perf_counter()
        count += 1
    end = time.perf_counter()
    return Sample((first - start) * 1000, (count - 1) / (end - first) if end > first else 0.0)


async def _raw_sse(client: httpx.AsyncClient, base_url: str) -> AsyncIterator[str]:
    body = {
        "model": "bench",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Stream me a long answer."}],
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    async with client.stream(
        "POST", f"{base_url}/chat/completions", json=body, headers=headers
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                if choices and (text := choices[0]["delta"].get("content")):
                    yield text


async def _langchain(chat: ChatOpenAI) -> AsyncIterator[str]:
    async for chunk in chat.astream(MESSAGES):
        if chunk.content:
            yield str(chunk.content)


async def _sitechat(service: OpenAILLMService) -> AsyncIterator[str]:
    async for delta in service.stream(MESSAGES):
        if delta.text:
            yield delta.text


def _start_server(tokens: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sitechat.testing.openai_server",
            "--port",
            "0",
            "--reply-tokens",
            str(tokens),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.split(" on ", 1)[1].split()[0]


async def _run(base_url: str, runs: int) -> dict[str, list[Sample]]:
    async with httpx.AsyncClient(timeout=60) as raw_client:
        service = OpenAILLMService(model="bench", api_key=KEY, base_url=base_url)
        defaults = ChatOpenAI(
            model="bench", api_key=KEY, base_url=base_url, max_retries=0, stream_usage=True
        )
        clients: dict[str, Callable[[], AsyncIterator[str]]] = {
            "raw httpx SSE reader": lambda: _raw_sse(raw_client, base_url),
            "ChatOpenAI.astream (defaults)": lambda: _langchain(defaults),
            "ChatOpenAI.astream (as sitechat sets it up)": lambda: _langchain(service._chat),
            "sitechat OpenAILLMService.stream": lambda: _sitechat(service),
        }
        results: dict[str, list[Sample]] = {name: [] for name in clients}
        for make in clients.values():  # warm up connections and imports
            await _measure(make())
        order = list(clients.items())
        for round_ in range(runs):
            # rotate who goes first, so no client always follows the same neighbour
            shift = round_ % len(order)
            for name, make in order[shift:] + order[:shift]:
                results[name].append(await _measure(make()))
        await service.aclose()
        return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=1000, help="tokens per streamed answer")
    args = parser.parse_args(argv)
    process, base_url = _start_server(args.tokens)
    try:
        results = asyncio.run(_run(base_url, args.runs))
    finally:
        process.terminate()
        process.wait()
    medians = {
        name: (
            statistics.median(s.first_token_ms for s in samples),
            statistics.median(s.tokens_per_second for s in samples),
        )
        for name, samples in results.items()
    }
    print(f"{args.runs} runs of {args.tokens} tokens each, medians:")
    print(f"{'client':46} {'first token':>12} {'tokens/s':>10}")
    for name, (ttft, rate) in medians.items():
        print(f"{name:46} {ttft:9.2f} ms {rate:10.0f}")
    base_ttft, base_rate = medians["ChatOpenAI.astream (as sitechat sets it up)"]
    ours_ttft, ours_rate = medians["sitechat OpenAILLMService.stream"]
    default_ttft, default_rate = medians["ChatOpenAI.astream (defaults)"]
    raw_ttft, raw_rate = medians["raw httpx SSE reader"]
    added = ours_ttft - base_ttft
    ratio = ours_rate / base_rate
    print()
    print(
        f"sitechat vs the ChatOpenAI it wraps: {added:+.2f} ms first token (target <= 1 ms), "
        f"{ratio:.2f}x throughput (target >= 0.9x)"
    )
    print(
        f"sitechat vs ChatOpenAI defaults: {ours_ttft - default_ttft:+.2f} ms first token, "
        f"{ours_rate / default_rate:.2f}x throughput"
    )
    print(
        f"raw reader (the physical limit) vs sitechat: {raw_ttft:.2f} ms vs {ours_ttft:.2f} ms, "
        f"{raw_rate / ours_rate:.1f}x the throughput"
    )
    print("targets met" if added <= 1.0 and ratio >= 0.9 else "TARGETS MISSED")


if __name__ == "__main__":
    main(sys.argv[1:])
