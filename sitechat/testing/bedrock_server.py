"""A local Bedrock runtime endpoint, for testing apps offline on the real wire.

Give its :attr:`~BedrockRuntimeServer.url` to boto3 as ``endpoint_url`` (any dummy
credentials work: the signature is not checked) and botocore's real serializers, signers
and event-stream decoder run against it::

    with BedrockRuntimeServer() as server:
        server.script(Reply("Hello"), BedrockFaults.throttling())
        client = boto3.client("bedrock-runtime", region_name="us-east-1",
                              endpoint_url=server.url, aws_access_key_id="testing",
                              aws_secret_access_key="testing")

It answers ``POST /model/{modelId}/converse``, ``/converse-stream`` (AWS event-stream
frames: messageStart, contentBlockDelta…, contentBlockStop, messageStop, metadata) and
``/invoke`` for Titan text embeddings v2 (``{"inputText"}``) and Cohere embed
(``{"texts", "input_type"}``). Scripted items are taken per endpoint: ``"converse"``
(both chat routes) and ``"invoke"``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from sitechat.testing._eventstream import encode_event, encode_exception
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

__all__ = ["BedrockFaults", "BedrockRuntimeServer", "HTTPFault", "Reply"]

_EVENT_STREAM = "application/vnd.amazon.eventstream"
# a Reply's finish_reason (OpenAI's words) as the stopReason Bedrock sends for it
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "guardrail_intervened",
}
# a frame whose prelude CRC is wrong: botocore's decoder must reject it
_MALFORMED_FRAME = b"\x00\x00\x00\x20\x00\x00\x00\x00\xde\xad\xbe\xef" + b"\x00" * 20


def _aws_error(status: int, code: str, message: str) -> HTTPFault:
    headers = (
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000"),
    )
    return HTTPFault(status, json.dumps({"message": message}).encode("utf-8"), headers)


class BedrockFaults:
    """Ready-made failures in the shapes the Bedrock runtime returns them."""

    @staticmethod
    def throttling() -> HTTPFault:
        """429 ``ThrottlingException``."""
        return _aws_error(
            429, "ThrottlingException", "Too many requests, please wait before trying again."
        )

    @staticmethod
    def access_denied() -> HTTPFault:
        """403 ``AccessDeniedException``: no ``bedrock:InvokeModel*`` permission or model access."""
        return _aws_error(
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        )

    @staticmethod
    def unrecognized_client() -> HTTPFault:
        """403 ``UnrecognizedClientException``: the credentials themselves are invalid."""
        return _aws_error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )

    @staticmethod
    def validation(
        message: str = "Malformed input request, please reformat your input and try again.",
    ) -> HTTPFault:
        """400 ``ValidationException``."""
        return _aws_error(400, "ValidationException", message)

    @staticmethod
    def input_too_long() -> HTTPFault:
        """400 ``ValidationException`` saying the prompt is too long for the model."""
        return _aws_error(400, "ValidationException", "Input is too long for requested model.")

    @staticmethod
    def model_not_found() -> HTTPFault:
        """404 ``ResourceNotFoundException``: unknown model id or inference profile."""
        return _aws_error(
            404,
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the model identifier.",
        )

    @staticmethod
    def unavailable() -> HTTPFault:
        """503 ``ServiceUnavailableException``."""
        return _aws_error(
            503, "ServiceUnavailableException", "Bedrock is unable to process your request."
        )

    @staticmethod
    def internal_error() -> HTTPFault:
        """500 ``InternalServerException``."""
        return _aws_error(
            500,
            "InternalServerException",
            "The request processing has failed because of an unknown error.",
        )


class BedrockRuntimeServer(WireServer):
    """A Bedrock runtime endpoint on 127.0.0.1, scriptable with replies and faults.

    A :class:`Reply` with ``error_after`` sends an exception event mid-stream; its
    ``error_type`` defaults to ``modelStreamErrorException`` (``throttlingException``
    is the other common one).
    """

    endpoints = ("converse", "invoke")

    def __init__(
        self,
        *,
        titan_dimension: int = 1024,
        cohere_dimension: int = 1024,
        default_reply: Reply | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.titan_dimension = titan_dimension
        self.cohere_dimension = cohere_dimension
        self.default_reply = default_reply or Reply()

    def _dispatch(self, request: RecordedRequest, response: _Response) -> None:
        parts = request.path.split("?", 1)[0].strip("/").split("/")
        if request.method != "POST" or len(parts) != 3 or parts[0] != "model":
            response.send_fault(_aws_error(404, "UnknownOperationException", "Unknown operation."))
            return
        model_id, action = unquote(parts[1]), parts[2]
        if action in ("converse", "converse-stream"):
            item = self._next("converse")
            if isinstance(item, HTTPFault):
                response.send_fault(item)
            else:
                self._converse(
                    request, response, item or self.default_reply, action == "converse-stream"
                )
        elif action == "invoke":
            item = self._next("invoke")
            if isinstance(item, HTTPFault):
                response.send_fault(item)
            else:
                self._invoke(request, response, model_id)
        else:
            response.send_fault(
                _aws_error(404, "UnknownOperationException", f"Unknown action {action}.")
            )

    # chat ------------------------------------------------------------------------------
    def _converse(
        self, request: RecordedRequest, response: _Response, reply: Reply, stream: bool
    ) -> None:
        body = request.json or {}
        messages = body.get("messages", [])
        text = reply.text if reply.text is not None else _echo(messages)
        tokens = reply.tokens(text)
        input_tokens = reply.input_tokens
        if input_tokens is None:
            input_tokens = sum(estimate_tokens(_message_text(m)) for m in messages)
        output_tokens = reply.output_tokens if reply.output_tokens is not None else len(tokens)
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        }
        response.wait(reply.first_byte_delay)
        if stream:
            self._stream(response, reply, tokens, usage)
        elif reply.drop_after is not None:
            response.drop()
        else:
            payload = {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": _stop_reason(reply),
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }
            response.send_json(
                200, payload, [("x-amzn-RequestId", "00000000-0000-0000-0000-000000000001")]
            )

    def _stream(
        self, response: _Response, reply: Reply, tokens: list[str], usage: dict[str, int]
    ) -> None:
        def encode(token: str) -> bytes:
            return encode_event(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": token}}
            )

        def error() -> bytes:
            return encode_exception(
                reply.error_type or "modelStreamErrorException", reply.error_message
            )

        response.start_stream(
            _EVENT_STREAM, [("x-amzn-RequestId", "00000000-0000-0000-0000-000000000002")]
        )
        response.chunk(encode_event("messageStart", {"role": "assistant"}))
        if not stream_tokens(
            response, reply, tokens, encode, malformed=_MALFORMED_FRAME, error=error
        ):
            return
        tail = (
            encode_event("contentBlockStop", {"contentBlockIndex": 0})
            + encode_event("messageStop", {"stopReason": _stop_reason(reply)})
            + encode_event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}})
        )
        response.chunk(tail)
        response.end_stream()

    # embeddings ------------------------------------------------------------------------
    def _invoke(self, request: RecordedRequest, response: _Response, model_id: str) -> None:
        body = request.json or {}
        if "inputText" in body:
            text = str(body["inputText"])
            dimension = int(body.get("dimensions") or self.titan_dimension)
            payload: dict[str, Any] = {
                "embedding": deterministic_vector(text, dimension),
                "inputTextTokenCount": estimate_tokens(text),
            }
        elif "texts" in body:
            texts = [str(t) for t in body["texts"]]
            dimension = int(body.get("output_dimension") or self.cohere_dimension)
            vectors = [deterministic_vector(t, dimension) for t in texts]
            payload = {
                "id": "sitechat-embed",
                "texts": texts,
                "embeddings": {"float": vectors} if "embedding_types" in body else vectors,
                "response_type": "embeddings_by_type"
                if "embedding_types" in body
                else "embeddings_floats",
            }
        else:
            response.send_fault(
                BedrockFaults.validation(f"Unsupported request body for model {model_id}.")
            )
            return
        response.send_json(200, payload)


def _stop_reason(reply: Reply) -> str:
    return _STOP_REASONS.get(reply.finish_reason, reply.finish_reason)


def _message_text(message: Any) -> str:
    blocks = message.get("content", []) if isinstance(message, dict) else []
    return " ".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))


def _echo(messages: list[Any]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return echo(_message_text(users[-1]) if users else "")


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted: ``python -m sitechat.testing.bedrock_server --port 8001``."""
    parser = argparse.ArgumentParser(description="A local Bedrock runtime test endpoint.")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between tokens")
    args = parser.parse_args(argv)
    server = BedrockRuntimeServer(port=args.port, default_reply=Reply(token_delay=args.token_delay))
    serve_until_interrupted(server, "Bedrock runtime endpoint on {url} (Ctrl+C to stop)")


if __name__ == "__main__":
    main()
