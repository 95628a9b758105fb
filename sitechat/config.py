"""Settings, read from ``SITECHAT_*`` environment variables and a ``.env`` file.

Nested fields use ``__``: ``SITECHAT_LLM__PROVIDER=bedrock``. Each provider owns a section
named after it, ``SITECHAT_<PROVIDER>__<FIELD>`` (``SITECHAT_OPENAI__API_KEY``), declared by
the provider's ``config_class`` and validated when the provider is built, so a third-party
plugin gets configuration the same way as a built-in one.

Priority, highest first: arguments passed in code, environment variables, the ``.env``
file, defaults. A bad value raises :class:`~sitechat.errors.ConfigurationError` naming the
environment variable; secrets are never echoed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from sitechat._redact import redact
from sitechat.errors import ConfigurationError
from sitechat.ingest.options import DEFAULT_USER_AGENT, normalize_trusted_host

__all__ = [
    "ChatSettings",
    "EmbeddingsSettings",
    "IngestSettings",
    "LLMSettings",
    "RetrievalSettings",
    "RetrySettings",
    "Settings",
    "VectorStoreSettings",
    "check_endpoint_url",
    "env_prefix_for",
    "load_provider_config",
]

ENV_PREFIX = "SITECHAT_"
# a URL may carry user:password@ or a token in its query, so URLs are never echoed either
_SECRET_HINTS = ("key", "secret", "password", "token", "dsn", "credential", "url")

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class RetrySettings(BaseModel):
    """How provider calls are retried before the first token (``SITECHAT_LLM__RETRY__*``)."""

    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries in all, the first included."
    )
    initial_backoff: float = Field(
        default=0.5, ge=0.0, description="Seconds before the first retry."
    )
    max_backoff: float = Field(default=8.0, ge=0.0, description="Cap on one wait, in seconds.")
    deadline: float = Field(
        default=60.0, gt=0, description="Seconds after which no new attempt starts."
    )
    jitter: bool = True


class LLMSettings(BaseModel):
    """Which LLM answers (``SITECHAT_LLM__*``)."""

    provider: str | None = Field(
        default=None,
        description="Registry name of the LLM provider; unset picks 'openai' when an OpenAI "
        "key is configured and the offline 'extractive' answerer otherwise.",
    )
    model: str | None = Field(default=None, description="Model id; each provider has a default.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for the first byte.")
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Providers tried in order when the main one fails before its first token.",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings)


class EmbeddingsSettings(BaseModel):
    """Which embedder turns text into vectors (``SITECHAT_EMBEDDINGS__*``)."""

    provider: str = "static"
    model: str | None = None
    batch_size: int = Field(default=64, ge=1, le=4096)


class VectorStoreSettings(BaseModel):
    """Which store keeps the vectors (``SITECHAT_VECTORSTORE__*``)."""

    provider: str = "faiss"


class RetrievalSettings(BaseModel):
    """How passages are found (``SITECHAT_RETRIEVAL__*``)."""

    top_k: int = Field(default=5, ge=1, le=50)
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    min_score: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Dense similarity at or above which a passage counts as relevant on its own; "
        "unset uses the embedder's calibrated value, if it has one.",
    )
    min_keyword_coverage: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of the question's content words a passage must contain to count as "
        "relevant by keywords. Below both thresholds the site is taken not to cover the question.",
    )
    max_per_page: int = Field(
        default=2, ge=1, description="Keeps one page from crowding out the rest."
    )
    rerank_depth: int = Field(
        default=40,
        ge=0,
        le=200,
        description="How many of the best fused passages are re-ordered by a passage "
        "scorer: the embedder's own when it has one (the offline default matches token by "
        "token), else the bundled token table (see token_rerank); 0 turns re-ranking off.",
    )
    token_rerank: bool = Field(
        default=True,
        description="Re-rank with sitechat's bundled token table when the embedder has no "
        "passage scorer of its own (MiniLM, OpenAI, Bedrock, hashing). The table is "
        "English; turn this off for a site in another language.",
    )


class ChatSettings(BaseModel):
    """How conversations are handled (``SITECHAT_CHAT__*``)."""

    provider: str = "retrieval"
    max_message_chars: int = Field(default=4000, ge=1)
    max_history_messages: int = Field(
        default=20,
        ge=0,
        description="History messages sent with a question; a question and its answer are two.",
    )
    rewrite_followups: bool = Field(
        default=True,
        description="Rewrite follow-up questions into standalone search queries using the history.",
    )
    answer_small_talk: bool = Field(
        default=True,
        description="Reply to a message that is only a greeting, thanks, goodbye or 'ok' "
        "without searching the site or calling the LLM.",
    )


class IngestSettings(BaseModel):
    """Crawl limits (``SITECHAT_INGEST__*``)."""

    max_pages: int = Field(default=500, ge=1)
    max_depth: int = Field(default=10, ge=0)
    max_bytes_per_page: int = Field(default=5_000_000, ge=1024)
    concurrency: int = Field(default=4, ge=1, le=64)
    timeout: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    user_agent: str = DEFAULT_USER_AGENT
    allow_private: bool = False
    include: list[str] = Field(
        default_factory=list, description="Regexes: only matching links are followed."
    )
    exclude: list[str] = Field(
        default_factory=list, description="Regexes: matching links are never followed."
    )
    sitemaps: list[str] = Field(default_factory=list, description="Sitemap URLs to read first.")
    use_sitemaps: bool = Field(default=True, description="Discover sitemaps via robots.txt.")
    max_seconds: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Total crawl time budget."
    )
    delay: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="Seconds between requests to one host."
    )
    per_host_concurrency: int | None = Field(default=None, ge=1)
    max_retries: int = Field(default=3, ge=0, description="Retries of a 429/503 response.")
    max_retry_wait: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    respect_robots: bool = True
    trusted_hosts: list[str] = Field(
        default_factory=list,
        description="HOST[:PORT] allowed even when private (narrower than allow_private).",
    )
    max_pattern_pages: int = Field(
        default=100, ge=1, description="Pages per URL pattern, against endless link traps."
    )
    max_link_share: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Pages with more link text than this (indexes, tables of contents) "
        "are followed but not indexed; 1 indexes every page.",
    )
    chunk_size: int = Field(default=1200, ge=200, description="Maximum characters per chunk.")
    chunk_overlap: int = Field(
        default=150,
        ge=0,
        description="Characters a chunk repeats from the one before; less than half of chunk_size.",
    )

    @field_validator("trusted_hosts")
    @classmethod
    def _check_trusted_hosts(cls, value: list[str]) -> list[str]:
        return [normalize_trusted_host(entry) for entry in value]

    @field_validator("include", "exclude")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        # at start-up, so a typo is a settings error (a usage error on the command line)
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{pattern!r} is not a regular expression ({exc}); patterns are Python "
                    "regular expressions searched in each link's URL"
                ) from None
        return value

    @model_validator(mode="after")
    def _check_overlap(self) -> IngestSettings:
        # checked here, at start-up, not by the chunker halfway through an ingest
        if self.chunk_overlap * 2 >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be less than half of chunk_size "
                f"({self.chunk_size}): lower {ENV_PREFIX}INGEST__CHUNK_OVERLAP or raise "
                f"{ENV_PREFIX}INGEST__CHUNK_SIZE"
            )
        return self


class Settings(BaseSettings):
    """Everything sitechat reads from the environment. Build it with :meth:`load`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    index: str = Field(
        default="sitechat-index",
        description="Where the index lives: a directory for 'faiss', a collection name for "
        "database stores.",
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embeddings: EmbeddingsSettings = Field(default_factory=EmbeddingsSettings)
    vectorstore: VectorStoreSettings = Field(default_factory=VectorStoreSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read settings; ``overrides`` (as keyword arguments) win over the environment.

        Raises :class:`ConfigurationError` naming the variable at fault, or the override:
        a misspelt one (``retreival=``, ``retrieval={"topk": 2}``) would otherwise be
        ignored without a word. ``index`` may be a :class:`~pathlib.Path`.
        """
        _check_overrides(cls, overrides)
        if isinstance(overrides.get("index"), Path):
            overrides = {**overrides, "index": str(overrides["index"])}
        try:
            settings = cls(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise ConfigurationError(describe_validation_error(exc, ENV_PREFIX)) from None
        except SettingsError as exc:
            raise ConfigurationError(
                describe_settings_error(exc, ENV_PREFIX, nested=True, model=cls, env_file=env_file)
            ) from None
        except UnicodeDecodeError:
            raise ConfigurationError(_unreadable_env_file(env_file)) from None
        settings._source_env_file = str(env_file) if env_file else None
        return settings

    @property
    def env_file(self) -> str | None:
        """The ``.env`` file these settings were read from; provider sections read it too."""
        return self._source_env_file

    _source_env_file: str | None = PrivateAttr(default=".env")


def _check_overrides(settings_class: type[BaseModel], overrides: Mapping[str, Any]) -> None:
    """Refuse an override that names no setting, with the nearest one that does."""
    sections = settings_class.model_fields
    for name, value in overrides.items():
        field = sections.get(name)
        if field is None:
            raise ConfigurationError(
                f"Settings.load() has no setting {name!r}{_nearest(name, sections)}. It takes "
                f"{', '.join(sections)}. A provider's own options (such as the openai or "
                "bedrock sections) are read from SITECHAT_<PROVIDER>__<OPTION> variables or "
                "the .env file."
            )
        section = field.annotation
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            continue
        known = section.model_fields
        for key in value if isinstance(value, Mapping) else ():
            if key not in known:
                raise ConfigurationError(
                    f"Settings.load() has no setting {name}.{key}{_nearest(str(key), known)}. "
                    f"The {name} settings are {', '.join(known)}."
                )


def _nearest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def env_value(names: Sequence[str], env_file: str | Path | None = ".env") -> str | None:
    """The value of the first of the variables ``names`` that is set: in the environment,
    else in the ``.env`` file (read once), as the settings read them (the environment wins,
    names match whatever their case); None when none is set, or set to nothing."""
    wanted = [name.upper() for name in names]
    environment = {key.upper(): value for key, value in os.environ.items() if value}
    for name in wanted:
        if name in environment:
            return environment[name]
    if not env_file or not os.path.isfile(env_file):
        return None
    try:
        values = dotenv_values(env_file, encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # the settings themselves report an unreadable file
    found = {key.upper(): value for key, value in values.items() if value}
    return next((found[name] for name in wanted if name in found), None)


def env_prefix_for(provider: str) -> str:
    """The environment prefix of a provider's own section: ``SITECHAT_<NAME>__``."""
    return f"{ENV_PREFIX}{provider.upper().replace('-', '_').replace('.', '_')}__"


def load_provider_config(
    config_class: type[ConfigT], provider: str, env_file: str | Path | None = ".env"
) -> ConfigT:
    """Read a provider's section (``SITECHAT_<NAME>__<FIELD>``) into ``config_class``.

    ``config_class`` is a plain pydantic model; this wraps it in a settings source with the
    provider's prefix so every provider, built-in or plugin, is configured the same way.
    """
    prefix = env_prefix_for(provider)
    source = type(
        f"{config_class.__name__}FromEnv",
        (BaseSettings, config_class),
        {
            "model_config": SettingsConfigDict(
                env_prefix=prefix,
                env_nested_delimiter="__",
                env_file=env_file if env_file and os.path.exists(env_file) else None,
                extra="ignore",
            )
        },
    )
    try:
        loaded = source()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc, prefix)) from None
    except SettingsError as exc:
        raise ConfigurationError(describe_settings_error(exc, prefix, nested=False)) from None
    except UnicodeDecodeError:
        raise ConfigurationError(_unreadable_env_file(env_file)) from None
    return config_class.model_validate(loaded.model_dump())


def _unreadable_env_file(env_file: str | Path | None) -> str:
    return (
        f"The settings file {env_file} is not UTF-8 text. Save it as UTF-8, or point "
        "sitechat at another one."
    )


def describe_settings_error(
    exc: SettingsError,
    prefix: str,
    *,
    nested: bool,
    model: type[BaseModel] | None = None,
    env_file: str | Path | None = None,
) -> str:
    """A value pydantic-settings could not even parse: list and mapping settings are JSON.

    Its message names only the field (``error parsing value for field "llm"``): a section
    of ``Settings`` when ``nested``, else the variable. For a section of ``model``, the
    variable is found by reading the section's JSON settings (``SITECHAT_LLM__FALLBACKS``);
    failing that, the message names the section (``a SITECHAT_LLM__* variable``).
    """
    text = str(exc)
    field = text.split('"')[1] if text.count('"') >= 2 else ""
    where = f"{prefix}{field.upper() or '*'}"
    if nested and field:
        found = _unparsable_json_setting(model, field, prefix, env_file)
        where = found or f"a {prefix}{field.upper()}__* variable"
    return (
        f"Invalid settings: {where} could not be parsed. Settings that hold a list or a "
        """mapping take JSON, for example SITECHAT_LLM__FALLBACKS='["openai"]' or """
        """SITECHAT_OPENAI__HEADERS='{"X-Team": "docs"}'. Fix the variable in your """
        "environment or .env file."
    )


def _unparsable_json_setting(
    model: type[BaseModel] | None, section: str, prefix: str, env_file: str | Path | None
) -> str | None:
    """The variable of ``model``'s ``section`` that takes JSON but holds something else."""
    field = model.model_fields.get(section) if model is not None else None
    annotation = field.annotation if field is not None else None
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return None
    for name, sub in annotation.model_fields.items():
        variable = f"{prefix}{section}__{name}".upper()
        value = env_value([variable], env_file) if _takes_json(sub.annotation) else None
        if value is None:
            continue
        try:
            json.loads(value)
        except ValueError:
            return variable
    return None


def _takes_json(annotation: Any) -> bool:
    """Whether pydantic-settings reads a field of this type as JSON: a list, set, tuple,
    mapping or model, or an optional one."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_takes_json(arg) for arg in get_args(annotation) if arg is not type(None))
    kind = get_origin(annotation) or annotation
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return True
    return kind in (list, dict, set, frozenset, tuple)


def check_endpoint_url(value: str | None) -> str | None:
    """An optional endpoint setting: unset (or empty), or an http(s) URL with a host.

    Checked when settings load: a URL without its scheme would otherwise fail on the
    first request, looking like a network failure, and be retried.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(
            "must be an http:// or https:// URL with a host, such as http://localhost:8000/v1"
        )
    return value


def describe_validation_error(exc: ValidationError, prefix: str) -> str:
    """One line per bad field, naming its environment variable and never echoing a secret."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"] if not isinstance(part, int)]
        env_var = prefix + "__".join(part.upper() for part in loc) if loc else prefix.rstrip("_")
        message = err["msg"].removeprefix("Value error, ")
        secret = any(hint in part.lower() for part in loc for hint in _SECRET_HINTS)
        value = err.get("input")
        shown = (
            ""
            if secret or isinstance(value, (dict, list)) or value is None
            else f" (got {redact(repr(value))})"
        )
        lines.append(f"{env_var}: {message}{shown}")
    return (
        "Invalid settings: "
        + "; ".join(lines)
        + ". Fix the variable in your environment or .env file."
    )
