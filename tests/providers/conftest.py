"""Fixtures for the provider tests: the local wire servers and fast retry settings."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from sitechat.config import RetrySettings
from sitechat.testing.bedrock_server import BedrockRuntimeServer
from sitechat.testing.openai_server import OpenAICompatibleServer

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"


@pytest.fixture
def openai_server() -> Iterator[OpenAICompatibleServer]:
    """A fresh OpenAI-compatible server on a free port."""
    with OpenAICompatibleServer() as server:
        yield server


@pytest.fixture
def bedrock_server() -> Iterator[BedrockRuntimeServer]:
    """A fresh Bedrock runtime endpoint on a free port."""
    with BedrockRuntimeServer() as server:
        yield server


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client handed to the OpenAI provider, closed after the test."""
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def fast_retry() -> RetrySettings:
    """Three attempts with millisecond backoffs, so retry tests stay fast."""
    return RetrySettings(max_attempts=3, initial_backoff=0.001, max_backoff=0.01, deadline=10)


@pytest.fixture
def aws_secret() -> str:
    """The secret access key the test clients sign with; it must never be printed."""
    return AWS_SECRET


@pytest.fixture
def make_bedrock_client() -> Iterator[Callable[..., Any]]:
    """Build real boto3 bedrock-runtime clients for a server (retries off); closed after."""
    made: list[Any] = []

    def make(server: BedrockRuntimeServer, *, read_timeout: float = 10.0) -> Any:
        client = _bedrock_client(server, read_timeout=read_timeout)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@functools.cache
def _session() -> Any:
    # one session caches botocore's service models, so each client builds in milliseconds
    return boto3.Session()


def _bedrock_client(server: BedrockRuntimeServer, *, read_timeout: float = 10.0) -> Any:
    return _session().client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="AKIATESTINGEXAMPLE01",
        aws_secret_access_key=AWS_SECRET,
        config=Config(
            retries={"total_max_attempts": 1},
            read_timeout=read_timeout,
            connect_timeout=2,
            max_pool_connections=64,
        ),
    )
