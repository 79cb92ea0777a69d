"""``fragment.toml`` -> typed settings.

INTERFACE SKETCH (to be completed under issue 3): the model classes below are the shape
other modules code against; loading, ``${ENV}`` interpolation, ``*_file`` secrets and
error messages are implemented in :func:`load_settings`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

DEFAULT_TASKS_API_URL = "https://api.onfragment.com/api/v1"


class TasksApiSettings(BaseModel):
    """``[tasks_api]``: where the Tasks API is and how hard we may use it."""

    model_config = ConfigDict(extra="forbid")

    url: str = DEFAULT_TASKS_API_URL
    token: SecretStr
    rate_limit: int | None = Field(
        default=60, description="Requests per minute the client allows itself; 0/None = off."
    )
    batch_size: int = Field(default=100, ge=1, description="Tasks per batch request.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds per request.")


class StateSettings(BaseModel):
    """``[state]``: where the sync state lives."""

    model_config = ConfigDict(extra="forbid")

    url: str = "sqlite:///fragment-state.db"


class ClosePolicy(BaseModel):
    """How absent records close tasks (safe closing)."""

    model_config = ConfigDict(extra="forbid")

    max_share: float = Field(
        default=0.5, ge=0, le=1, description="Close nothing if more than this share would close."
    )
    min_open: int = Field(
        default=10, ge=0, description="The cap applies above this many open tasks."
    )
    debounce: int = Field(
        default=1, ge=1, description="Complete runs a record must be missing before closing."
    )


class SourceSettings(BaseModel):
    """One ``[[sources]]`` entry: a connector and its settings."""

    model_config = ConfigDict(extra="forbid")

    name: str
    connector: str
    every: timedelta = timedelta(minutes=5)
    full_every: timedelta = timedelta(hours=1)
    enabled: bool = True
    reopen: str = "on-change"  # "on-change" | "never"
    close: ClosePolicy = Field(default_factory=ClosePolicy)
    options: Any = None  # the connector's validated Config instance


class Settings(BaseModel):
    """The whole configuration."""

    model_config = ConfigDict(extra="forbid")

    tasks_api: TasksApiSettings
    state: StateSettings = Field(default_factory=StateSettings)
    sources: list[SourceSettings] = Field(default_factory=list)
    path: Path | None = None

    def source(self, name: str) -> SourceSettings:
        """The source called ``name`` (KeyError if none)."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)
