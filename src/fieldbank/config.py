"""Settings: defaults under ./var/, overridden by fieldbank.toml, overridden by env vars.

Precedence (highest first): FIELDBANK_* environment variables, then the file named by
FIELDBANK_CONFIG (default ./fieldbank.toml, optional), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("var")
# The champion policy and the blocklist ship in the repository's policies/ folder.
REPO_POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"


class DecisionSettings(BaseModel):
    """The decision service's knobs (fieldbank.toml `[decision]`, or FIELDBANK_DECISION as JSON)."""

    model_config = ConfigDict(extra="forbid")

    policy_path: Path = Field(REPO_POLICIES_DIR / "credit_policy.json", description="champion policy (JDM)")
    blocklist_path: Path = Field(REPO_POLICIES_DIR / "blocklist.csv", description="sanctions/blocklist CSV")
    challenger: str | None = Field("scorecard_both", description="model of the champion's bundle scored in shadow")
    offer_ttl_days: int = Field(14, ge=1, le=90)
    unscored_pd: float = Field(0.10, ge=0, le=1, description="PD assumed when no portrait or model can score")
    velocity_window_hours: int = Field(24, ge=1, le=24 * 30)
    velocity_max_per_party: int = Field(3, ge=1)
    velocity_max_per_phone: int = Field(5, ge=1)
    velocity_max_per_device: int = Field(5, ge=1)
    shared_identity_max_parties: int = Field(3, ge=1, description="k: a phone/device used by more parties is flagged")
    declared_income_max_ratio: float = Field(3.0, gt=0, description="declared yearly income / observed inflows")
    declared_income_floor_minor: int = Field(1_200_000, ge=0, description="no mismatch flag below this declared income")
    cost_of_funds_bps: int = Field(300, ge=0, le=10_000)
    operating_cost_bps: int = Field(200, ge=0, le=10_000)
    max_apr_bps: int = Field(3_600, ge=0, le=100_000, description="the legal maximum APR")
    portrait_check_seconds: float = Field(5.0, ge=0.1, description="how often to look for a newer portrait")


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
    decision: DecisionSettings = Field(default_factory=DecisionSettings, description="decision service")
    api_keys: list[str] = Field(default_factory=list, description="X-API-Key values accepted on /v1 (empty: open)")

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
