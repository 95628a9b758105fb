"""The pgvector store's settings, importable without the database driver installed."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["PgVectorConfig"]

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"

with warnings.catch_warnings():
    # "schema" is the natural name of the setting (SITECHAT_PGVECTOR__SCHEMA); pydantic
    # warns that it shadows the deprecated BaseModel.schema() method, which is intended
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class PgVectorConfig(BaseModel):
        """The pgvector store's settings, ``SITECHAT_PGVECTOR__<FIELD>``."""

        model_config = ConfigDict(extra="ignore")

        dsn: SecretStr | None = Field(
            default=None,
            description="postgresql://USER:PASSWORD@HOST:5432/DBNAME (a secret: never logged).",
        )
        schema: str = Field(  # type: ignore[assignment]
            default="sitechat",
            pattern=_IDENTIFIER,
            description="Schema holding sitechat's tables; created if missing and allowed.",
        )
        create_extension: bool = Field(
            default=True,
            description="Run CREATE EXTENSION vector when it is missing (needs the privilege).",
        )
        text_search_config: str = Field(
            default="english",
            pattern=_IDENTIFIER,
            description="PostgreSQL text search configuration for new collections "
            "('simple' for no stemming, or another language).",
        )
        pool_min: int = Field(default=1, ge=0, le=100)
        pool_max: int = Field(default=10, ge=1, le=1000)
        pool_timeout: float = Field(
            default=30.0, gt=0, description="Seconds to wait for a free pooled connection."
        )
        connect_timeout: float = Field(
            default=10.0, gt=0, description="Seconds to wait for the server to answer."
        )
        hnsw_threshold: int = Field(
            default=5_000,
            ge=0,
            description="Chunks past which persist() builds the HNSW index (exact search "
            "below it); 0 builds it when the collection is created.",
        )
        hnsw_m: int = Field(default=16, ge=2, le=100)
        hnsw_ef_construction: int = Field(default=64, ge=4, le=1000)
        hnsw_build_memory_mb: int = Field(
            default=256,
            ge=1,
            description="maintenance_work_mem for building the HNSW index; the graph builds "
            "fastest when it fits (about 2 KB per 384-dimension chunk).",
        )
        ef_search: int = Field(
            default=100,
            ge=1,
            le=1000,
            description="HNSW candidates per query: higher finds more true neighbours, slower.",
        )

        @model_validator(mode="after")
        def _pool_bounds(self) -> Self:
            if self.pool_max < self.pool_min:
                raise ValueError(
                    f"pool_max ({self.pool_max}) must be at least pool_min ({self.pool_min})"
                )
            return self
