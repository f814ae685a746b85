"""The `[statistics]` section: where every contact's life is written, and whether addresses are."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ace_email.config.base import Section

SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
DATABASE_FILE = "statistics.sqlite3"


class StatisticsSettings(Section):
    """The statistics database: SQLite in the data folder unless a URL names another."""

    database_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB; "
        "default: SQLite in data_dir",
    )
    data_dir: Path = Field(
        default=Path("var"),
        description="folder of the default SQLite database, relative to the working directory",
    )
    store_addresses: bool = Field(
        default=False, description="keep each contact's sender address with its events"
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, separator, rest = value.partition("://")
        if not separator or not rest:
            raise ValueError(f"not a database URL (expected {', '.join(SCHEMES)}://...)")
        if scheme not in SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
        return value

    def url(self) -> str:
        """The URL the store opens: the configured one, or the SQLite file in data_dir."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{self.data_dir / DATABASE_FILE}"
