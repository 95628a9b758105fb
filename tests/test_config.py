"""Settings: the env var names deployments rely on, validation, sources and priority."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from sitechat.config import Settings, env_prefix_for, load_provider_config
from sitechat.errors import ConfigurationError


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
