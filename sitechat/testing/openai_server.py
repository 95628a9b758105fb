"""A local OpenAI-compatible server, for testing apps offline on the real wire.

It answers ``POST /v1/chat/completions`` (JSON, or SSE when ``stream`` is true, with the
usage chunk when ``stream_options.include_usage`` is set), ``POST /v1/embeddings`` and
``GET /v1/models``, so the real ``openai`` client, ``ChatOpenAI`` and ``OpenAIEmbeddings``
talk to it exactly as to a hosted service::

    with OpenAICompatibleServer() as server:
        server.script(Reply("Hello there"), OpenAIFaults.rate_limited(retry_after=1))
        llm = ChatOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)

Each request takes the next scripted item for its endpoint (``"chat"`` or
``"embeddings"``); with nothing scripted, chat echoes the last user message and
embeddings are :func:`deterministic_vector` of each input. Run it stand-alone with
``python -m sitechat.testing.openai_server --port 8000``.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sitechat.testing._wire import (
    HTTPFault,
    RecordedRequest,
    Reply,
    WireServer,
    _Response,
    deterministic_vector,
    echo,
    estimate_tokens,
    serve_until_interrupted,
    stream_tokens,
)

__all__ = ["HTTPFault", "OpenAICompatibleServer", "OpenAIFaults", "Reply"]

_SSE_DONE = b"data: [DONE]\n\n"
_RECEIVED_KEY = "<received-key>"
_MALFORMED_SSE = b'data: {"choices": [{"index": 0, "delta": {"content": \n\n'


def _error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    payload = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return json.dumps(payload).encode("utf-8")


_JSON: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


class OpenAIFaults:
    """Ready-made failures in the shapes OpenAI's API returns them."""

    @staticmethod
    def rate_limited(retry_after: float | None = 1.0) -> HTTPFault:
        """429 with ``Retry-After`` (seconds) when given."""
        headers = _JSON
        if retry_after is not None:
            headers += (("Retry-After", f"{retry_after:g}"),)
        body = _error_body(
            "Rate limit reached for requests. Please try again later.",
            "requests",
            "rate_limit_exceeded",
        )
        return HTTPFault(429, body, headers)

    @staticmethod
    def server_error(status: int = 500) -> HTTPFault:
        """A 5xx with OpenAI's error body."""
        body = _error_body(
            "The server had an error while processing your request.", "server_error", None
        )
        return HTTPFault(status, body, _JSON)

    @staticmethod
    def unavailable() -> HTTPFault:
        """503: the engine is overloaded."""
        body = _error_body("The engine is currently overloaded.", "server_error", None)
        return HTTPFault(503, body, _JSON)

    @staticmethod
    def unauthorized() -> HTTPFault:
        """401. Like OpenAI, the message quotes the key it received (here in full)."""
        body = _error_body(
            f"Incorrect API key provided: {_RECEIVED_KEY}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )
        return HTTPFault(401, body, _JSON)

    @staticmethod
    def forbidden() -> HTTPFault:
        """403: the key is valid but not allowed to use this model or region."""
        body = _error_body(
            "You are not allowed to sample from this model.", "invalid_request_error", None
        )
        return HTTPFault(403, body, _JSON)

    @staticmethod
    def model_not_found(model: str = "gpt-unknown") -> HTTPFault:
        """404 with ``model_not_found``."""
        body = _error_body(
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
        return HTTPFault(404, body, _JSON)

    @staticmethod
    def context_length_exceeded(limit: int = 8192, requested: int = 9000) -> HTTPFault:
        """400 with ``context_length_exceeded``, worded as OpenAI words it."""
        body = _error_body(
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {requested} tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
        return HTTPFault(400, body, _JSON)

    @staticmethod
    def bad_request(message: str = "Invalid value for 'temperature'.") -> HTTPFault:
        """400 for any other invalid request."""
        return HTTPFault(400, _error_body(message, "invalid_request_error", None), _JSON)


class OpenAICompatibleServer(WireServer):
    """An OpenAI-compatible HTTP server on 127.0.0.1, scriptable with replies and faults.

    ``models`` (when given) is the list served by ``/v1/models``; a chat request naming
    another model gets a 404 ``model_not_found``. ``default_reply`` shapes the answer
    when nothing is scripted (its ``text`` None keeps the echo).
    """

    endpoints = ("chat", "embeddings")

    def __init__(
        self,
        *,
        embedding_dimension: int = 64,
        models: Sequence[str] | None = None,
        default_reply: Reply | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.embedding_dimension = embedding_dimension
        self.models = list(models) if models is not None else None
        self.default_reply = default_reply or Reply()
        #: answer streaming requests with one JSON reply, like servers that cannot stream
        self.stream_as_json = False

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def _dispatch(self, request: RecordedRequest, response: _Response) -> None:
        path = request.path.split("?", 1)[0].rstrip("/")
        if request.method == "GET" and path == "/v1/models":
            names = self.models or ["sitechat-test"]
            data = [
                {"id": n, "object": "model", "created": 0, "owned_by": "sitechat"} for n in names
            ]
            response.send_json(200, {"object": "list", "data": data})
        elif request.method == "POST" and path == "/v1/chat/completions":
            self._chat(request, response)
        elif request.method == "POST" and path == "/v1/embeddings":
            self._embeddings(request, response)
        else:
            body = _error_body(f"Unknown path {path}.", "invalid_request_error", "unknown_url")
            response.send(404, body, _JSON)

    # chat ------------------------------------------------------------------------------
    def _chat(self, request: RecordedRequest, response: _Response) -> None:
        body = request.json or {}
        item = self._next("chat")
        if isinstance(item, HTTPFault):
            self._send_fault(request, response, item)
            return
        model = str(body.get("model", ""))
        if self.models is not None and model not in self.models:
            self._send_fault(request, response, OpenAIFaults.model_not_found(model))
            return
        reply = item or self.default_reply
        text = reply.text if reply.text is not None else _echo(body.get("messages", []))
        tokens = reply.tokens(text)
        usage = _usage(reply, body.get("messages", []), len(tokens))
        response.wait(reply.first_byte_delay)
        if body.get("stream") and not self.stream_as_json:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(response, reply, model, tokens, usage if include_usage else None)
        else:
            self._complete(response, reply, model, text, usage)

    def _send_fault(self, request: RecordedRequest, response: _Response, fault: HTTPFault) -> None:
        marker = _RECEIVED_KEY.encode()
        if marker in fault.body:
            # OpenAI quotes the rejected key back; quote it whole to prove callers hide it
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            fault = replace(fault, body=fault.body.replace(marker, key.encode("utf-8")))
        response.send_fault(fault)

    def _complete(
        self, response: _Response, reply: Reply, model: str, text: str, usage: dict[str, int]
    ) -> None:
        if reply.drop_after is not None:
            response.drop()
            return
        payload = {
            "id": "chatcmpl-sitechat",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": reply.finish_reason,
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": usage,
        }
        response.send_json(200, payload)

    def _stream(
        self,
        response: _Response,
        reply: Reply,
        model: str,
        tokens: list[str],
        usage: dict[str, int] | None,
    ) -> None:
        head = {
            "id": "chatcmpl-sitechat",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        # every token chunk shares this frame; only the content is encoded per token
        prefix, _, suffix = _sse(
            {**head, "choices": [{"index": 0, "delta": {"content": "\x00"}, "finish_reason": None}]}
        ).partition(b'"\\u0000"')

        def encode(token: str) -> bytes:
            return prefix + json.dumps(token).encode("utf-8") + suffix

        def error() -> bytes:
            message = reply.error_message
            return _sse({"error": {"message": message, "type": reply.error_type or "server_error"}})

        response.start_stream("text/event-stream", [("Cache-Control", "no-cache")])
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        response.chunk(_sse({**head, "choices": [first]}))
        if not stream_tokens(
            response, reply, tokens, encode, malformed=_MALFORMED_SSE, error=error
        ):
            return
        last = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason}
        tail = _sse({**head, "choices": [last]})
        if usage is not None:
            tail += _sse({**head, "choices": [], "usage": usage})
        response.chunk(tail + _SSE_DONE)
        response.end_stream()

    # embeddings ------------------------------------------------------------------------
    def _embeddings(self, request: RecordedRequest, response: _Response) -> None:
        item = self._next("embeddings")
        if isinstance(item, HTTPFault):
            self._send_fault(request, response, item)
            return
        body = request.json or {}
        raw = body.get("input", [])
        inputs = [raw] if isinstance(raw, (str, int)) or (raw and isinstance(raw[0], int)) else raw
        dimension = int(body.get("dimensions") or self.embedding_dimension)
        texts = [t if isinstance(t, str) else json.dumps(t) for t in inputs]
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": _encode_vector(t, dimension, as_base64),
            }
            for i, t in enumerate(texts)
        ]
        tokens = sum(estimate_tokens(t) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        response.send_json(200, payload)


def _encode_vector(text: str, dimension: int, as_base64: bool) -> list[float] | str:
    vector = deterministic_vector(text, dimension)
    if not as_base64:
        return vector
    # what OpenAI sends for encoding_format=base64: little-endian float32s
    return base64.b64encode(struct.pack(f"<{dimension}f", *vector)).decode("ascii")


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode("utf-8") + b"\n\n"


def _message_text(message: Any) -> str:
    content = message.get("content", "") if isinstance(message, dict) else ""
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _echo(messages: list[Any]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return echo(_message_text(users[-1]) if users else "")


def _usage(reply: Reply, messages: list[Any], n_tokens: int) -> dict[str, int]:
    prompt = reply.input_tokens
    if prompt is None:
        prompt = sum(estimate_tokens(_message_text(m)) for m in messages)
    completion = reply.output_tokens if reply.output_tokens is not None else n_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted: ``python -m sitechat.testing.openai_server --port 8000``."""
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible test server.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dimension", type=int, default=64, help="embedding dimension")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument(
        "--reply-tokens", type=int, default=0, help="reply with this many tokens, not an echo"
    )
    parser.add_argument("--token-size", type=int, default=4, help="characters per token")
    args = parser.parse_args(argv)
    text = None
    if args.reply_tokens:
        filler = "sitechat streams answers token by token. "
        length = args.reply_tokens * args.token_size
        text = (filler * (length // len(filler) + 1))[:length]
    server = OpenAICompatibleServer(
        port=args.port,
        embedding_dimension=args.dimension,
        default_reply=Reply(text, token_size=args.token_size, token_delay=args.token_delay),
    )
    serve_until_interrupted(server, "OpenAI-compatible server on {url}/v1 (Ctrl+C to stop)")


if __name__ == "__main__":
    main()
