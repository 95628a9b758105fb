"""Settings: the env var names deployments rely on, validation, sources and priority."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import sitechat
from sitechat.config import IngestSettings, Settings, env_prefix_for, load_provider_config
from sitechat.errors import ConfigurationError
from sitechat.ingest.options import DEFAULT_USER_AGENT, CrawlOptions


def test_documented_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """SITECHAT_LLM__PROVIDER and friends map onto the nested settings."""
    monkeypatch.setenv("SITECHAT_LLM__PROVIDER", "bedrock")
    monkeypatch.setenv("SITECHAT_LLM__MODEL", "anthropic.claude-3-haiku")
    monkeypatch.setenv("SITECHAT_EMBEDDINGS__PROVIDER", "openai")
    monkeypatch.setenv("SITECHAT_EMBEDDINGS__MODEL", "text-embedding-3-small")
    monkeypatch.setenv("SITECHAT_VECTORSTORE__PROVIDER", "pgvector")
    settings = Settings.load()
    assert settings.llm.provider == "bedrock"
    assert settings.llm.model == "anthropic.claude-3-haiku"
    assert settings.embeddings.provider == "openai"
    assert settings.embeddings.model == "text-embedding-3-small"
    assert settings.vectorstore.provider == "pgvector"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that fails validation is reported with its environment variable."""
    monkeypatch.setenv("SITECHAT_RETRIEVAL__TOP_K", "lots")
    with pytest.raises(ConfigurationError, match="SITECHAT_RETRIEVAL__TOP_K"):
        Settings.load()


def test_out_of_range_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constraints apply to environment values too (top_k must be at least 1)."""
    monkeypatch.setenv("SITECHAT_RETRIEVAL__TOP_K", "0")
    with pytest.raises(ConfigurationError, match="SITECHAT_RETRIEVAL__TOP_K"):
        Settings.load()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    """A .env file in the working directory configures sitechat."""
    (tmp_path / ".env").write_text("SITECHAT_LLM__MODEL=from-dotenv\n")
    assert Settings.load().llm.model == "from-dotenv"


def test_priority_code_over_env_over_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arguments beat environment variables, which beat the .env file, which beats defaults."""
    (tmp_path / ".env").write_text("SITECHAT_INDEX=dotenv-index\nSITECHAT_LLM__MODEL=dotenv\n")
    assert Settings.load().index == "dotenv-index"
    monkeypatch.setenv("SITECHAT_INDEX", "env-index")
    assert Settings.load().index == "env-index"
    assert Settings.load(index="code-index").index == "code-index"
    assert Settings.load().llm.model == "dotenv"


class _SecretConfig(BaseModel):
    api_key: SecretStr
    timeout: float = 5.0


def test_provider_section_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider's section is SITECHAT_<NAME>__<FIELD>, hyphens becoming underscores."""
    assert env_prefix_for("demo-echo") == "SITECHAT_DEMO_ECHO__"
    monkeypatch.setenv("SITECHAT_MY_PROVIDER__API_KEY", "sk-test-123")
    monkeypatch.setenv("SITECHAT_MY_PROVIDER__TIMEOUT", "9")
    config = load_provider_config(_SecretConfig, "my-provider", None)
    assert config.api_key.get_secret_value() == "sk-test-123"
    assert config.timeout == 9.0


def test_missing_secret_is_named() -> None:
    """A missing key is reported with the variable that would provide it."""
    with pytest.raises(ConfigurationError, match="SITECHAT_MY_PROVIDER__API_KEY"):
        load_provider_config(_SecretConfig, "my-provider", None)


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation errors on fields named like secrets do not print the value."""

    class DsnConfig(BaseModel):
        dsn: int

    monkeypatch.setenv("SITECHAT_DB__DSN", "postgresql://user:hunter2@db/x")
    with pytest.raises(ConfigurationError) as info:
        load_provider_config(DsnConfig, "db", None)
    assert "hunter2" not in str(info.value)
    assert "SITECHAT_DB__DSN" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SITECHAT_LLM__FALLBACKS", "openai,bedrock"),
        ("SITECHAT_LLM__FALLBACKS", "openai"),
        ("SITECHAT_INGEST__EXCLUDE", "/blog/*, /tags/*"),
    ],
)
def test_a_list_setting_that_is_not_json_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A list given as plain text is a ConfigurationError naming the variable and the JSON form."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        Settings.load(env_file=None)
    assert f"{variable} could not be parsed" in str(info.value) and "JSON" in str(info.value)


def test_a_list_setting_in_the_env_file_that_is_not_json_names_its_variable(
    tmp_path: Path,
) -> None:
    """The same mistake written in the .env file names the variable too."""
    env_file = tmp_path / ".env"
    env_file.write_text("SITECHAT_LLM__FALLBACKS=openai\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="SITECHAT_LLM__FALLBACKS could not be parsed"):
        Settings.load(env_file=env_file)


def test_a_mapping_provider_setting_that_is_not_json_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider's dict setting given as plain text names that very variable."""

    class HeadersConfig(BaseModel):
        headers: dict[str, str] = {}

    monkeypatch.setenv("SITECHAT_DEMO__HEADERS", "X-Team=docs")
    with pytest.raises(ConfigurationError, match="SITECHAT_DEMO__HEADERS could not be parsed"):
        load_provider_config(HeadersConfig, "demo", None)


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://gateway/v1", "http:///v1"])
def test_an_endpoint_without_http_scheme_or_host_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """SITECHAT_OPENAI__BASE_URL must be an http(s) URL with a host, checked before any request."""
    from sitechat.llm.openai import OpenAIConfig

    monkeypatch.setenv("SITECHAT_OPENAI__BASE_URL", f"{url}")
    with pytest.raises(ConfigurationError, match="SITECHAT_OPENAI__BASE_URL: must be an http"):
        load_provider_config(OpenAIConfig, "openai", None)


def test_a_refused_endpoint_never_echoes_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed endpoint URL holding a password is refused without printing the password."""
    from sitechat.llm.bedrock import BedrockConfig

    monkeypatch.setenv("SITECHAT_BEDROCK__ENDPOINT_URL", "user:hunter2-pw@vpce.example/x")
    with pytest.raises(ConfigurationError) as info:
        load_provider_config(BedrockConfig, "bedrock", None)
    assert "hunter2" not in str(info.value)
    assert "SITECHAT_BEDROCK__ENDPOINT_URL" in str(info.value)


def test_a_dotenv_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    """A .env file in another encoding is a ConfigurationError naming the file."""
    (tmp_path / ".env").write_bytes("SITECHAT_LLM__MODEL=caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigurationError, match=r"\.env is not UTF-8"):
        Settings.load()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"retreival": {"top_k": 2}}, "no setting 'retreival' (did you mean 'retrieval'?)"),
        ({"retrieval": {"topk": 2}}, "no setting retrieval.topk (did you mean 'top_k'?)"),
        ({"openai": {"api_key": "sk-x"}}, "SITECHAT_<PROVIDER>__<OPTION> variables"),
    ],
)
def test_a_misspelt_override_is_refused_with_the_nearest_setting(
    overrides: dict[str, Any], message: str
) -> None:
    """An override in code that names no setting raises instead of being ignored."""
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Settings.load(env_file=None, **overrides)


def test_overrides_that_name_settings_still_win(tmp_path: Path) -> None:
    """Known overrides apply; the index may be a pathlib.Path, as SiteChat accepts."""
    settings = Settings.load(env_file=None, index=tmp_path / "idx", retrieval={"top_k": 2})
    assert settings.index == str(tmp_path / "idx")
    assert settings.retrieval.top_k == 2


def test_a_chunk_overlap_of_half_the_chunk_size_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CHUNK_SIZE=250 with the default overlap of 150 fails at start-up naming both
    variables, not halfway through an ingest."""
    monkeypatch.setenv("SITECHAT_INGEST__CHUNK_SIZE", "250")
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(env_file=None)
    message = str(caught.value)
    assert "SITECHAT_INGEST__CHUNK_OVERLAP" in message
    assert "SITECHAT_INGEST__CHUNK_SIZE" in message
    monkeypatch.setenv("SITECHAT_INGEST__CHUNK_OVERLAP", "100")
    assert Settings.load(env_file=None).ingest.chunk_size == 250


def test_an_include_pattern_that_is_no_regex_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broken SITECHAT_INGEST__INCLUDE/EXCLUDE regex fails when settings load, naming
    the variable and the pattern, not when the crawl starts."""
    monkeypatch.setenv("SITECHAT_INGEST__EXCLUDE", '["/blog/", "("]')
    with pytest.raises(ConfigurationError, match=r"SITECHAT_INGEST__EXCLUDE: '\(' is not a"):
        Settings.load(env_file=None)


def test_the_user_agent_default_is_the_crawler_s_and_carries_the_version() -> None:
    """SITECHAT_INGEST__USER_AGENT defaults to the one User-Agent CrawlOptions() sends,
    sitechat/<installed version> with the project's URL."""
    assert IngestSettings.model_fields["user_agent"].default is DEFAULT_USER_AGENT
    assert CrawlOptions().user_agent is DEFAULT_USER_AGENT
    assert Settings.load(env_file=None).ingest.user_agent == DEFAULT_USER_AGENT
    assert sitechat.__version__ == version("sitechat")
    expected = f"sitechat/{version('sitechat')} (+https://github.com/sitechat/sitechat)"
    assert expected == DEFAULT_USER_AGENT
