"""Settings: defaults under ./var/, overridden by fieldbank.toml, overridden by env vars.

Precedence (highest first): FIELDBANK_* environment variables, then the file named by
FIELDBANK_CONFIG (default ./fieldbank.toml, optional), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    """Where fieldbank keeps its files and which engines it uses."""

    model_config = SettingsConfigDict(env_prefix="FIELDBANK_", extra="forbid")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="root of everything fieldbank writes")
    raw_dir: Path | None = Field(None, description="raw event files (simulator output); default data_dir/raw")
    lake_dir: Path | None = Field(None, description="validated Parquet lake; default data_dir/lake")
    quarantine_dir: Path | None = Field(None, description="rejected rows with reasons; default data_dir/quarantine")
    truth_dir: Path | None = Field(None, description="simulator ground truth; default data_dir/truth")
    models_dir: Path | None = Field(None, description="model registry; default data_dir/models")
    database_url: str | None = Field(None, description="bank database; default SQLite file data_dir/bank.db")
    engine: Literal["duckdb", "spark"] = Field("duckdb", description="batch engine for portraits and scoring")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("FIELDBANK_CONFIG", "fieldbank.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    def model_post_init(self, _context: object) -> None:
        # Derived paths follow data_dir unless set explicitly.
        if self.raw_dir is None:
            self.raw_dir = self.data_dir / "raw"
        if self.lake_dir is None:
            self.lake_dir = self.data_dir / "lake"
        if self.quarantine_dir is None:
            self.quarantine_dir = self.data_dir / "quarantine"
        if self.truth_dir is None:
            self.truth_dir = self.data_dir / "truth"
        if self.models_dir is None:
            self.models_dir = self.data_dir / "models"
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'bank.db'}"


def load_settings(**overrides: object) -> Settings:
    """Settings with explicit overrides (e.g. from CLI options) on top; None means 'not given'."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
