"""The ``bedrock`` LLM provider: Amazon Bedrock's Converse API via ``ChatBedrockConverse``.

Configured by ``SITECHAT_LLM__*`` and its own section ``SITECHAT_BEDROCK__*``
(:class:`BedrockConfig`: region, endpoint URL for VPC endpoints, profile). Credentials come
from the standard AWS chain (environment, profile, ECS task or instance role) and are never
required in sitechat's settings. Model ids may be inference profiles
(``us.anthropic.claude-3-5-haiku-20241022-v1:0``) or their ARNs.

boto3 is synchronous. LangChain's ``astream`` would run every ``next()`` of the stream in
the event loop's small default executor, so fifty concurrent chats would queue behind a
handful of threads. Each stream here runs whole in a thread of the service's own pool
(``max_concurrency`` threads) and hands chunks to the event loop as they arrive, so the loop
never blocks and concurrent chats do not wait on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from langchain_core.messages import AIMessageChunk, BaseMessage
from pydantic import BaseModel, Field, SecretStr, field_validator

from sitechat.config import RetrySettings, check_endpoint_url, load_provider_config
from sitechat.errors import ConfigurationError, MissingDependencyError
from sitechat.llm._errors import map_bedrock_error
from sitechat.llm._langchain import check_ending, chunk_piece, message_delta, model_for
from sitechat.llm.base import BaseLLMService, Piece

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["BedrockConfig", "BedrockLLMService", "make_bedrock_client"]

DEFAULT_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"

_CONTEXT_WINDOWS = {
    "anthropic.claude": 200_000,
    "amazon.nova": 300_000,
    "meta.llama3": 128_000,
    "mistral.": 32_000,
}


class BedrockConfig(BaseModel):
    """The ``SITECHAT_BEDROCK__*`` section, shared by the LLM and embeddings providers."""

    region: str | None = Field(
        default=None,
        description="AWS region; AWS_REGION / AWS_DEFAULT_REGION / the profile's otherwise.",
    )
    endpoint_url: str | None = Field(
        default=None, description="A VPC (PrivateLink) or test endpoint for bedrock-runtime."
    )
    profile: str | None = Field(default=None, description="A named AWS profile to use.")
    model: str | None = Field(
        default=None,
        description="Chat model when this provider is a fallback (else SITECHAT_LLM__MODEL).",
    )
    context_window: int | None = Field(default=None, ge=256)
    streaming: bool = True
    embedding_dimensions: int | None = Field(
        default=None, ge=1, description="Titan v2: 256, 512 or 1024; Cohere v4: up to 1536."
    )
    max_concurrency: int = Field(
        default=64, ge=1, le=1024, description="Streams (and connections) served at once."
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="Only if you must: prefer the standard AWS chain."
    )
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        return check_endpoint_url(value)

    def secrets(self) -> tuple[str, ...]:
        """The credentials set here, for masking wherever a vendor quotes them."""
        values = (self.aws_access_key_id, self.aws_secret_access_key, self.aws_session_token)
        return tuple(value.get_secret_value() for value in values if value is not None)


def make_bedrock_client(
    config: BedrockConfig, *, timeout: float = 60.0, service: str = "bedrock-runtime"
) -> Any:
    """A boto3 client for ``service`` that never retries (sitechat's retry layer does).

    Raises :class:`ConfigurationError` when no region can be found, the profile does not
    exist, or the explicit credentials are half set.
    """
    try:
        import boto3  # type: ignore[import-untyped, unused-ignore]
        from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]
        from botocore.exceptions import ProfileNotFound  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("boto3", "bedrock", "The 'bedrock' provider") from exc

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    _check_credentials(config)
    try:
        session = boto3.Session(
            profile_name=config.profile,
            region_name=config.region,
            aws_access_key_id=secret(config.aws_access_key_id),
            aws_secret_access_key=secret(config.aws_secret_access_key),
            aws_session_token=secret(config.aws_session_token),
        )
        session_region = session.region_name
    except ProfileNotFound as exc:
        raise ConfigurationError(_unknown_profile(config, exc)) from None
    region = config.region or session_region
    if not region:
        raise ConfigurationError(
            "The 'bedrock' provider needs an AWS region. Set SITECHAT_BEDROCK__REGION "
            "(or AWS_REGION), e.g. us-east-1."
        )
    botocore_config = Config(
        region_name=region,
        connect_timeout=min(timeout, 10.0),
        read_timeout=timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=config.max_concurrency,
        user_agent_extra="sitechat",
    )
    return session.client(
        service, region_name=region, endpoint_url=config.endpoint_url, config=botocore_config
    )


_KEY_ID_VAR = "SITECHAT_BEDROCK__AWS_ACCESS_KEY_ID"
_ACCESS_KEY_VAR = "SITECHAT_BEDROCK__AWS_SECRET_ACCESS_KEY"


def _check_credentials(config: BedrockConfig) -> None:
    """Refuse explicit credentials that boto3 would only fail to sign with at the first
    request: a key id without its secret (or the reverse), a session token without both."""
    has_id = config.aws_access_key_id is not None
    has_secret = config.aws_secret_access_key is not None
    if has_id == has_secret and (has_id or config.aws_session_token is None):
        return
    if has_id != has_secret:
        given, missing = (
            (_KEY_ID_VAR, _ACCESS_KEY_VAR) if has_id else (_ACCESS_KEY_VAR, _KEY_ID_VAR)
        )
        problem = f"{given} is set but {missing} is not"
    else:
        problem = (
            f"SITECHAT_BEDROCK__AWS_SESSION_TOKEN is set without {_KEY_ID_VAR} and "
            f"{_ACCESS_KEY_VAR}"
        )
    raise ConfigurationError(
        f"Incomplete AWS credentials for the 'bedrock' provider: {problem}. Set both (and the "
        "session token for temporary credentials), or none of them to use the standard AWS "
        "chain (AWS_PROFILE, environment, task or instance role)."
    )


def _unknown_profile(config: BedrockConfig, exc: Exception) -> str:
    where = "SITECHAT_BEDROCK__PROFILE" if config.profile else "AWS_PROFILE"
    name = config.profile or getattr(exc, "kwargs", {}).get("profile", "")
    return (
        f"{where} names the AWS profile '{name}', which is not in the AWS config files "
        "(~/.aws/config and ~/.aws/credentials, or AWS_CONFIG_FILE and "
        f"AWS_SHARED_CREDENTIALS_FILE). Fix the name, or unset {where} to use the default "
        "credential chain."
    )


def _context_window(model: str) -> int:
    base = model.split("/")[-1]
    for prefix, window in _CONTEXT_WINDOWS.items():
        if prefix in base:
            return window
    return 8192


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


_END = object()

# Which answer a pool thread is streaming, so that the boto3 event stream it opens can be
# stopped by the event loop when the reader stops: boto3 otherwise blocks the thread in a
# socket read until the model's next chunk, and abandoned answers would fill the pool.
_streaming = threading.local()


class _OpenStreams:
    """The boto3 event streams of one answer.

    The event loop calls :meth:`abandon` when the reader stops; it only shuts the sockets'
    read side, which never blocks and ends the pool thread's blocked read. The pool thread
    then closes the streams itself in :meth:`close`: closing a response while another
    thread reads it waits for that read, and would stall the event loop until the next
    chunk.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: list[Any] = []
        self._abandoned = False

    def add(self, stream: Any) -> None:
        """Called in the pool thread as the stream opens."""
        with self._lock:
            self._streams.append(stream)
            abandoned = self._abandoned
        if abandoned:  # abandoned before the stream even opened
            _shut_reading(stream)

    def abandon(self) -> None:
        """Called in the event loop: wake the pool thread's blocked read."""
        with self._lock:
            self._abandoned = True
            streams = list(self._streams)
        for stream in streams:
            _shut_reading(stream)

    def close(self) -> None:
        """Called in the pool thread when it is done with the answer."""
        with self._lock:
            streams, self._streams = self._streams, []
        for stream in streams:
            with contextlib.suppress(Exception):  # a failed close has nothing more to free
                stream.close()


def _shut_reading(stream: Any) -> None:
    """Shut the read side of an event stream's socket, so a read blocked on it sees the
    end of the stream now. (Closing the socket would not wake it.) urllib3 before 2.3 has
    no ``shutdown``: there the thread waits for the next chunk or the read timeout."""
    shutdown = getattr(getattr(stream, "_raw_stream", None), "shutdown", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:  # already released to the pool: its read has ended
            return


def _capture_stream(parsed: Any = None, **_: Any) -> None:
    """botocore ``after-call`` hook: hand a ConverseStream's event stream to its answer."""
    streams = getattr(_streaming, "streams", None)
    if streams is not None and isinstance(parsed, dict) and parsed.get("stream") is not None:
        streams.add(parsed["stream"])


class BedrockLLMService(BaseLLMService):
    """Answers with a model on Amazon Bedrock through the Converse API, streaming.

    ``client`` is a boto3 ``bedrock-runtime`` client (inject one for tests or custom
    sessions); without it one is built from ``config``.
    """

    name: ClassVar[str] = "bedrock"
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None
    config_class: ClassVar[type[BaseModel] | None] = BedrockConfig

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        client: Any = None,
        config: BedrockConfig | None = None,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        timeout: float = 60.0,
        retry: RetrySettings | None = None,
    ) -> None:
        try:
            from langchain_aws import ChatBedrockConverse
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingDependencyError(
                "langchain-aws", "bedrock", "The 'bedrock' provider"
            ) from exc
        config = config or BedrockConfig()
        self._owns_client = client is None
        if client is None:
            client = make_bedrock_client(config, timeout=timeout)
        self._client = client
        self._secrets = config.secrets()
        self.model = model
        self.region: str = client.meta.region_name
        self.retry = retry or RetrySettings()
        self.streaming = config.streaming
        self.max_output_tokens = max_tokens
        self.context_window = config.context_window or _context_window(model)
        # the control-plane client only resolves application inference profiles; build it
        # (with the same session settings) only then, and otherwise let the runtime client
        # stand in so LangChain does not create one from the default session
        control = (
            make_bedrock_client(config, timeout=timeout, service="bedrock")
            if "application-inference-profile" in model
            else client
        )
        self._chat = ChatBedrockConverse(
            model=model,
            client=client,
            bedrock_client=control,
            region_name=self.region,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        self._executor = ThreadPoolExecutor(
            max_workers=config.max_concurrency, thread_name_prefix="sitechat-bedrock"
        )
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:  # a no-op outside this service's streams; registered once
            events.register(
                "after-call.bedrock-runtime.ConverseStream",
                _capture_stream,
                unique_id="sitechat-capture-stream",
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``settings.llm`` and the ``SITECHAT_BEDROCK__*`` section."""
        config = load_provider_config(BedrockConfig, cls.name, settings.env_file)
        return cls(
            model=model_for(settings, config.model, cls.name, DEFAULT_MODEL),
            config=config,
            temperature=settings.llm.temperature,
            max_tokens=settings.llm.max_tokens,
            timeout=settings.llm.timeout,
            retry=settings.llm.retry,
        )

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[Piece, None]:
        """One try on the wire, vendor errors mapped at the boundary (and raised outside
        the ``except`` block, so the vendor's exception is not chained to them)."""
        try:
            if not self.streaming:
                loop = asyncio.get_running_loop()
                message = await loop.run_in_executor(
                    self._executor, self._chat.invoke, list(messages)
                )
                delta = message_delta(message)
                stop = message.response_metadata.get("stopReason")
                check_ending(self.name, self.model, said=bool(delta.text), stop=stop)
                yield delta
                return
            said = False
            stop = None
            # closed explicitly: an abandoned ``async for`` leaves its generator to the
            # garbage collector, and the pool thread reading the stream waits until then
            chunks = self._chunks_from_thread(list(messages))
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    piece = chunk_piece(chunk)
                    if not said:
                        said = bool(piece if isinstance(piece, str) else piece.text)
                    stop = chunk.response_metadata.get("stopReason") or stop
                    yield piece
            check_ending(self.name, self.model, said=said, stop=stop)
            return
        except Exception as exc:
            error = map_bedrock_error(
                exc,
                provider=self.name,
                model=self.model,
                region=self.region,
                secrets=self._secrets,
            )
        raise error

    async def _chunks_from_thread(
        self, messages: list[BaseMessage]
    ) -> AsyncGenerator[AIMessageChunk, None]:
        """Run the blocking boto3 stream in a pool thread and relay its chunks to the loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        abandoned = threading.Event()

        def deliver(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                abandoned.set()

        streams = _OpenStreams()

        def produce() -> None:
            _streaming.streams = streams
            try:
                for chunk in self._chat.stream(messages):
                    if abandoned.is_set():
                        return
                    deliver(chunk)
            except Exception as exc:
                if not abandoned.is_set():
                    deliver(_Failure(exc))
            else:
                deliver(_END)
            finally:
                _streaming.streams = None
                streams.close()

        self._executor.submit(produce)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield cast(AIMessageChunk, item)
        finally:
            abandoned.set()
            streams.abandon()

    async def aclose(self) -> None:
        """Release the thread pool, and the boto3 client if this service built it."""
        self._executor.shutdown(wait=False)
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"BedrockLLMService(model={self.model!r}, region={self.region!r})"
