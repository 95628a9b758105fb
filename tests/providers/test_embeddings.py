"""The openai and bedrock embedders on the real wire: batching, retries, dimensions, errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sitechat.config import RetrySettings, Settings
from sitechat.embeddings.bedrock import BedrockTextEmbeddings
from sitechat.embeddings.openai import OpenAITextEmbeddings
from sitechat.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    PermissionDeniedError,
)
from sitechat.llm.bedrock import BedrockConfig
from sitechat.testing._wire import deterministic_vector
from sitechat.testing.bedrock_server import BedrockFaults, BedrockRuntimeServer
from sitechat.testing.openai_server import OpenAICompatibleServer, OpenAIFaults
from tests.providers.tracebacks import everything_shown

TEXTS = [f"passage number {i}" for i in range(7)]


def _close(vectors: list[list[float]], texts: list[str], dimension: int) -> bool:
    expected = [deterministic_vector(t, dimension) for t in texts]
    return all(
        abs(a - b) < 1e-6
        for got, want in zip(vectors, expected, strict=True)
        for a, b in zip(got, want, strict=True)
    )


@pytest.fixture
async def openai_embedder(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings
) -> AsyncIterator[OpenAITextEmbeddings]:
    """text-embedding-3-small shortened to 64 dimensions, three texts per request."""
    embedder = OpenAITextEmbeddings(
        api_key="sk-embed-secret-0123456789",
        base_url=openai_server.base_url,
        dimensions=64,
        batch_size=3,
        retry=fast_retry,
    )
    yield embedder
    await embedder.aclose()


def test_openai_batches_requests_and_keeps_order(
    openai_server: OpenAICompatibleServer, openai_embedder: OpenAITextEmbeddings
) -> None:
    """Seven texts in batches of three: three requests, vectors in input order."""
    vectors = openai_embedder.embed_documents(TEXTS)
    assert [len(r.json["input"]) for r in openai_server.requests] == [3, 3, 1]
    assert openai_server.requests[0].json["dimensions"] == 64
    assert _close(vectors, TEXTS, 64)


async def test_openai_async_batches_are_retried_on_their_own(
    openai_server: OpenAICompatibleServer, openai_embedder: OpenAITextEmbeddings
) -> None:
    """A 429 on one batch retries that batch only; the result is complete and ordered."""
    openai_server.script(OpenAIFaults.rate_limited(retry_after=0), endpoint="embeddings")
    vectors = await openai_embedder.aembed_documents(TEXTS)
    # the batches race, so any one of them may be the one rate limited and sent twice
    sent = Counter(tuple(r.json["input"]) for r in openai_server.requests)
    assert sorted(sent.values()) == [1, 1, 2]
    assert sorted(len(batch) for batch in sent) == [1, 3, 3]
    assert _close(vectors, TEXTS, 64)
    assert _close([await openai_embedder.aembed_query("q")], ["q"], 64)


def test_openai_identity_and_dimension(openai_embedder: OpenAITextEmbeddings) -> None:
    """The index records the provider, model and vector length."""
    assert openai_embedder.embedder_name == "openai:text-embedding-3-small"
    assert openai_embedder.dimension == 64


def test_openai_errors_are_mapped_and_redacted(
    openai_server: OpenAICompatibleServer, openai_embedder: OpenAITextEmbeddings
) -> None:
    """A 401 is an AuthenticationError without the key in its message."""
    openai_server.script(OpenAIFaults.unauthorized(), endpoint="embeddings")
    with pytest.raises(AuthenticationError) as caught:
        openai_embedder.embed_query("q")
    assert "sk-embed-secret" not in str(caught.value)


async def test_openai_errors_keep_the_key_out_of_the_traceback(
    openai_server: OpenAICompatibleServer, openai_embedder: OpenAITextEmbeddings
) -> None:
    """A 401 quoting the key back, sync or async: no chained exception shows the key."""
    openai_server.script(*[OpenAIFaults.unauthorized()] * 2, endpoint="embeddings")
    with pytest.raises(AuthenticationError) as sync_call:
        openai_embedder.embed_query("q")
    with pytest.raises(AuthenticationError) as async_call:
        await openai_embedder.aembed_query("q")
    for caught in (sync_call, async_call):
        assert "sk-embed-secret" not in everything_shown(caught.value)
        assert "Error code: 401" in str(caught.value.__cause__)


def test_openai_unknown_model_needs_a_dimension(openai_server: OpenAICompatibleServer) -> None:
    """A compatible server's model of unknown size must be declared, naming the variable."""
    with pytest.raises(ConfigurationError, match="SITECHAT_OPENAI__EMBEDDING_DIMENSIONS"):
        OpenAITextEmbeddings(model="nomic-embed-text", base_url=openai_server.base_url)


async def test_openai_from_settings(
    openai_server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SITECHAT_EMBEDDINGS__* and the shared SITECHAT_OPENAI__* section configure it."""
    monkeypatch.setenv("SITECHAT_EMBEDDINGS__PROVIDER", "openai")
    monkeypatch.setenv("SITECHAT_EMBEDDINGS__MODEL", "local-embedder")
    monkeypatch.setenv("SITECHAT_EMBEDDINGS__BATCH_SIZE", "2")
    monkeypatch.setenv("SITECHAT_OPENAI__BASE_URL", openai_server.base_url)
    monkeypatch.setenv("SITECHAT_OPENAI__EMBEDDING_DIMENSIONS", "64")
    embedder = OpenAITextEmbeddings.from_settings(Settings.load(env_file=None))
    assert (embedder.model, embedder.batch_size, embedder.dimension) == ("local-embedder", 2, 64)
    assert _close(embedder.embed_documents(["a", "b", "c"]), ["a", "b", "c"], 64)
    assert "dimensions" not in openai_server.requests[0].json
    await embedder.aclose()


@pytest.mark.parametrize(
    ("model", "dimension", "calls"),
    [
        ("amazon.titan-embed-text-v2:0", 256, 7),
        ("cohere.embed-english-v3", 1024, 3),
        ("cohere.embed-v4:0", 512, 3),
    ],
)
async def test_bedrock_models_batch_as_the_model_allows(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
    model: str,
    dimension: int,
    calls: int,
) -> None:
    """Titan: one call per text; Cohere: batch_size texts per call; vectors in order."""
    embedder = BedrockTextEmbeddings(
        model=model,
        client=make_bedrock_client(bedrock_server),
        dimensions=dimension if "cohere.embed-english" not in model else None,
        batch_size=3,
        retry=fast_retry,
    )
    vectors = await embedder.aembed_documents(TEXTS)
    assert len(bedrock_server.requests) == calls
    assert _close(vectors, TEXTS, dimension)
    assert embedder.dimension == dimension
    assert embedder.embedder_name == f"bedrock:{model}"
    embedder.close()


def test_bedrock_cohere_marks_questions_and_passages(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> None:
    """Cohere gets input_type search_document for passages, search_query for questions."""
    embedder = BedrockTextEmbeddings(
        model="cohere.embed-multilingual-v3",
        client=make_bedrock_client(bedrock_server),
        retry=fast_retry,
    )
    embedder.embed_documents(["doc"])
    embedder.embed_query("question")
    assert [r.json["input_type"] for r in bedrock_server.requests] == [
        "search_document",
        "search_query",
    ]
    embedder.close()


def test_bedrock_throttling_is_retried_and_access_denied_is_not(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> None:
    """A throttled call is tried again; a denied one fails with the IAM hint."""
    embedder = BedrockTextEmbeddings(client=make_bedrock_client(bedrock_server), retry=fast_retry)
    bedrock_server.script(BedrockFaults.throttling(), endpoint="invoke")
    assert _close([embedder.embed_query("q")], ["q"], 1024)
    assert len(bedrock_server.requests) == 2
    bedrock_server.script(BedrockFaults.access_denied(), endpoint="invoke")
    with pytest.raises(PermissionDeniedError, match="bedrock:InvokeModel"):
        embedder.embed_query("q")
    embedder.close()


def test_bedrock_errors_keep_the_configured_secret_out_of_the_traceback(
    bedrock_server: BedrockRuntimeServer, fast_retry: RetrySettings, aws_secret: str
) -> None:
    """An error quoting the configured secret key: no chained exception shows it."""
    config = BedrockConfig(
        region="us-east-1",
        endpoint_url=bedrock_server.url,
        aws_access_key_id="AKIATESTINGEXAMPLE01",
        aws_secret_access_key=aws_secret,
    )
    embedder = BedrockTextEmbeddings(config=config, retry=fast_retry)
    bedrock_server.script(BedrockFaults.validation(f"bad secret {aws_secret}"), endpoint="invoke")
    with pytest.raises(BadRequestError) as caught:
        embedder.embed_query("q")
    embedder.close()
    assert aws_secret not in everything_shown(caught.value)
    assert "ValidationException" in str(caught.value.__cause__)


@pytest.mark.parametrize(
    ("model", "size"), [("amazon.titan-embed-text-v2:0", 300), ("cohere.embed-english-v3", 512)]
)
def test_bedrock_rejects_sizes_the_model_cannot_produce(model: str, size: int) -> None:
    """An impossible dimension fails at start-up, listing the allowed ones."""
    with pytest.raises(ConfigurationError, match="SITECHAT_BEDROCK__EMBEDDING_DIMENSIONS"):
        BedrockTextEmbeddings(model=model, client=object(), dimensions=size)


def test_bedrock_rejects_unknown_model_families() -> None:
    """Only Titan and Cohere embedding models are understood."""
    with pytest.raises(ConfigurationError, match="not supported"):
        BedrockTextEmbeddings(model="meta.llama3-8b-instruct-v1:0", client=object())


def test_bedrock_from_settings(
    bedrock_server: BedrockRuntimeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SITECHAT_EMBEDDINGS__MODEL and the SITECHAT_BEDROCK__* section configure it."""
    monkeypatch.setenv("SITECHAT_EMBEDDINGS__MODEL", "amazon.titan-embed-text-v2:0")
    monkeypatch.setenv("SITECHAT_BEDROCK__REGION", "us-west-2")
    monkeypatch.setenv("SITECHAT_BEDROCK__ENDPOINT_URL", bedrock_server.url)
    monkeypatch.setenv("SITECHAT_BEDROCK__EMBEDDING_DIMENSIONS", "512")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTINGEXAMPLE01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    embedder = BedrockTextEmbeddings.from_settings(Settings.load(env_file=None))
    assert (embedder.region, embedder.dimension) == ("us-west-2", 512)
    assert _close([embedder.embed_query("q")], ["q"], 512)
    assert bedrock_server.requests[0].json == {
        "inputText": "q",
        "dimensions": 512,
        "normalize": True,
    }
    embedder.close()
