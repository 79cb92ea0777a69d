"""``fragment.toml`` -> typed settings.

:func:`load_settings` reads the file with :mod:`tomllib`, replaces ``${VAR}`` and
``${VAR:-default}`` in strings (``$${`` is a literal ``${``), reads ``*_file`` keys
(``token_file = "secrets/token"``) into the key without ``_file``, validates
``[tasks_api]``, ``[state]`` and each ``[[sources]]`` entry, and validates each source's
``options`` with its connector's ``Config`` model. Every error names the file, the source
and the key::

    fragment.toml: sources[2] "support" (zendesk): options.subdomain: field required

Sources are counted from 0, like the array they are in.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from fragment_core.errors import ConfigurationError
from fragment_core.redaction import redact_url
from fragment_core.validation import explain, loc_text


class ConnectorOptions(Protocol):
    """What loading a configuration needs of the connector registry
    (:class:`fragment_core.plugins.ConnectorRegistry`): the options model of a connector and
    their validation. The registry is given, never looked up here (config imports no plugins)."""

    def options_model(self, name: str) -> type[BaseModel]:
        """The options model of connector ``name``; ``ConfigurationError`` if unknown."""
        ...

    def validate_options(self, name: str, options: Any) -> BaseModel:
        """``options`` validated; raises pydantic's ``ValidationError``."""
        ...

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_TASKS_API_URL",
    "ClosePolicy",
    "ConnectorOptions",
    "FleetSettings",
    "Settings",
    "SourceSettings",
    "StateSettings",
    "TasksApiSettings",
    "config_path",
    "load_settings",
    "parse_duration",
]

DEFAULT_TASKS_API_URL = "https://api.onfragment.com/api/v1"
#: Environment variable naming the configuration file.
CONFIG_ENV = "FRAGMENT_CONFIG"
#: The configuration file used when neither a path nor ``$FRAGMENT_CONFIG`` is given.
DEFAULT_CONFIG_FILE = "fragment.toml"

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_ENV_REF = re.compile(r"\$\$\{|\$\{([^}:]*)(?::-([^}]*))?\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def parse_duration(value: Any) -> timedelta:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"2h"``, ``"1d"`` or seconds as an int -> timedelta.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str) and value.strip().isdigit():
        result = timedelta(seconds=int(value.strip()))
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())) and value:
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        result = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    else:
        raise ValueError(
            f"invalid duration {value!r}: use seconds (300) or a text like 30s, 5m, 1h30m, 2h"
        )
    if result <= timedelta(0):
        raise ValueError("duration must be greater than zero")
    return result


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
    lease_ttl: timedelta = Field(
        default=timedelta(minutes=2),
        gt=timedelta(0),
        description="How long a run's lease on its source outlives its last heartbeat "
        "(renewed every third of it): a dead run's source is free again after this.",
    )

    @field_validator("lease_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    def __repr_args__(self) -> Any:
        """The URL with its password masked (``repr`` reaches logs and tracebacks)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" and isinstance(value, str) else value


class FleetSettings(BaseModel):
    """``[fleet]``: the Temporal service fleet mode runs on (``fragment worker``,
    ``fragment schedules``, ``fragment sync --on-temporal``).

    Unset keys come from Temporal's own environment variables and config profile
    (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
    ``TEMPORAL_TLS_CLIENT_CERT_PATH``...), which override the keys set here; command line
    flags override both. ``*_file`` keys read a secret from a file, as elsewhere.
    """

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, description="host:port of the Temporal frontend.")
    namespace: str | None = Field(default=None, description="Temporal namespace.")
    task_queue: str = Field(default="fragment", min_length=1, description="Task queue.")
    api_key: SecretStr | None = Field(default=None, description="API key (Temporal Cloud).")
    tls: bool | None = Field(default=None, description="Use TLS (implied by a cert or API key).")
    tls_cert: Path | None = Field(default=None, description="Client certificate (PEM) for mTLS.")
    tls_key: Path | None = Field(default=None, description="Client private key (PEM) for mTLS.")
    tls_ca: Path | None = Field(default=None, description="CA certificate of the server (PEM).")
    tls_server_name: str | None = Field(default=None, description="TLS server name override.")
    lease_ttl: timedelta | None = Field(
        default=None,
        gt=timedelta(0),
        description="Lease TTL of fleet runs (default: [state] lease_ttl); it bridges the "
        "gap between a run's activities, so keep it above the activity heartbeat timeout.",
    )

    heartbeat_timeout: timedelta = Field(
        default=timedelta(seconds=30),
        gt=timedelta(0),
        description="Activities heartbeat; one silent this long (its worker lost) is "
        "retried on another worker.",
    )

    @field_validator("lease_ttl", "heartbeat_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)


class ClosePolicy(BaseModel):
    """How absent records close tasks (safe closing)."""

    model_config = ConfigDict(extra="forbid")

    max_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Close nothing if this share or more of the open tasks would close "
        "(counting every close of the rolling window).",
    )
    min_open: int = Field(
        default=10, ge=0, description="The cap applies above this many open tasks."
    )
    debounce: int = Field(
        default=1, ge=1, description="Complete runs a record must be missing before closing."
    )
    window: timedelta = Field(
        default=timedelta(hours=24),
        description="Closes by the runs of this rolling window count together against the "
        "cap (a run forced with --force-close is not counted).",
    )

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> timedelta:
        return parse_duration(value)


class SourceSettings(BaseModel):
    """One ``[[sources]]`` entry: a connector and its settings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=_SOURCE_NAME, description="Part of every task uid: never rename casually."
    )
    connector: str = Field(min_length=1, description="The connector's name.")
    every: timedelta = timedelta(minutes=5)
    full_every: timedelta = timedelta(hours=1)
    enabled: bool = True
    reopen: Literal["on-change", "never"] = "on-change"
    close: ClosePolicy = Field(default_factory=ClosePolicy)
    skip_unchanged: bool = Field(
        default=True,
        description="Skip mapping records whose raw form is unchanged since the last run; "
        "false when a transform hook reads data from outside the record.",
    )
    verify_every: timedelta | None = Field(
        default=timedelta(days=1),
        description="How often a full run first lists the source's tasks in the Tasks API "
        'and repairs those deleted or changed there by someone else; "never" turns it off.',
    )
    options: Any = None  # the connector's validated Config instance

    @field_validator("every", "full_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("verify_every", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> timedelta | None:
        if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
            return None
        return parse_duration(value)


class Settings(BaseModel):
    """The whole configuration."""

    model_config = ConfigDict(extra="forbid")

    tasks_api: TasksApiSettings
    state: StateSettings = Field(default_factory=StateSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    sources: list[SourceSettings] = Field(default_factory=list)
    path: Path | None = None

    def source(self, name: str) -> SourceSettings:
        """The source called ``name`` (KeyError if none)."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


# -- loading ------------------------------------------------------------------------------


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The configuration file to read: ``path``, else ``$FRAGMENT_CONFIG``, else ./fragment.toml."""
    if path is not None and str(path) != "":
        return Path(path)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


class _Loader:
    """Turns the raw TOML of one file into :class:`Settings`, naming every error's place.

    A place is the source (``sources[2] "support" (zendesk)``, or ``""`` outside sources)
    and the key (``options.subdomain``).
    """

    def __init__(self, path: Path, env: Mapping[str, str], registry: ConnectorOptions) -> None:
        self.path = path
        self.label = str(path)
        self.env = env
        self.registry = registry

    def fail(self, source: str, key: str, message: str) -> ConfigurationError:
        where = ": ".join(part for part in (self.label, source, key) if part)
        return ConfigurationError(message, where=where)

    # ${VAR} and *_file ----------------------------------------------------------------
    def interpolate(self, value: Any, source: str, key: str) -> Any:
        if isinstance(value, str):
            return self._interpolate_text(value, source, key)
        if isinstance(value, list):
            return [self.interpolate(v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.interpolate(v, source, _dotted(key, k)) for k, v in value.items()}
        return value

    def _interpolate_text(self, text: str, source: str, key: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if not _ENV_NAME.fullmatch(name):
                raise self.fail(source, key, f"invalid environment variable reference ${{{name}}}")
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                raise self.fail(
                    source, key, f"environment variable {name} is not set (used as ${{{name}}})"
                )
            return value

        return _ENV_REF.sub(replace, text)

    def read_secret_files(
        self,
        table: dict[str, Any],
        model: type[BaseModel] | tuple[type[BaseModel], ...],
        source: str,
        prefix: str,
    ) -> dict[str, Any]:
        """Replace ``X_file = "path"`` with ``X = <file content>`` unless the model has
        X_file; in nested tables too (``auth = {type = "bearer", token_file = "..."}``)."""
        models = model if isinstance(model, tuple) else (model,)
        declared = set().union(*(m.model_fields for m in models))
        result = dict(table)
        for name, value in table.items():
            if isinstance(value, dict):
                nested = _table_models(models, name)
                if nested:  # a table of options, not free-form data such as custom fields
                    result[name] = self.read_secret_files(
                        value, nested, source, _dotted(prefix, name)
                    )
                continue
            if not name.endswith("_file") or name in declared:
                continue
            target = name.removesuffix("_file")
            key = _dotted(prefix, name)
            if target in table:
                raise self.fail(source, key, f"set either {target} or {name}, not both")
            if not isinstance(value, str):
                raise self.fail(source, key, "expected the path of a file holding the secret")
            file = Path(value).expanduser()
            if not file.is_absolute():
                file = self.path.parent / file
            try:
                secret = file.read_text(encoding="utf-8")
            except OSError as exc:
                raise self.fail(
                    source, key, f"cannot read secret file {value}: {exc.strerror or exc}"
                ) from None
            del result[name]
            result[target] = secret.rstrip("\r\n")
        return result

    # validation -----------------------------------------------------------------------
    def validate(
        self,
        model: type[BaseModel],
        data: Any,
        source: str,
        prefix: str,
        validator: Callable[[Any], Any] | None = None,
    ) -> Any:
        try:
            return (validator or model.model_validate)(data)
        except ValidationError as exc:
            lines = []
            for error in exc.errors(include_url=False):
                loc, text = explain(error, model)
                key = _dotted(prefix, loc_text(loc))
                where = ": ".join(part for part in (self.label, source, key) if part)
                lines.append(f"{where}: {text}")
            raise ConfigurationError("\n".join(lines)) from None

    def load(self, raw: dict[str, Any]) -> Settings:
        raw = dict(raw)
        raw_sources = raw.pop("sources", [])
        if not isinstance(raw_sources, list) or not all(isinstance(s, dict) for s in raw_sources):
            raise self.fail("", "sources", "expected an array of tables ([[sources]] blocks)")
        top = self.interpolate(raw, "", "")
        if isinstance(top.get("tasks_api"), dict):
            top["tasks_api"] = self.read_secret_files(
                top["tasks_api"], TasksApiSettings, "", "tasks_api"
            )
        if isinstance(top.get("fleet"), dict):
            top["fleet"] = self.read_secret_files(top["fleet"], FleetSettings, "", "fleet")
        if "path" in top:
            raise self.fail("", "path", "unknown key")
        settings = self.validate(Settings, top, "", "")
        seen: dict[str, int] = {}
        problems: list[str] = []  # every broken source is reported, not only the first
        for index, raw_source in enumerate(raw_sources):
            try:
                source = self.load_source(index, raw_source)
                if source.name in seen:
                    raise self.fail(
                        f'sources[{index}] "{source.name}" ({source.connector})',
                        "name",
                        f'duplicate source name "{source.name}"'
                        f" (also sources[{seen[source.name]}])",
                    )
            except ConfigurationError as exc:
                problems.append(str(exc))
                continue
            seen[source.name] = index
            settings.sources.append(source)
        if problems:
            raise ConfigurationError("\n".join(problems))
        settings.path = self.path
        return settings

    def load_source(self, index: int, raw: dict[str, Any]) -> SourceSettings:
        name, connector = raw.get("name"), raw.get("connector")
        where = f"sources[{index}]"
        if isinstance(name, str):
            where += f' "{name}"'
        if isinstance(connector, str):
            where += f" ({connector})"
        data = self.interpolate(raw, where, "")
        options = data.pop("options", {})
        source = self.validate(SourceSettings, data, where, "")
        if not isinstance(options, dict):
            raise self.fail(where, "options", "expected a table ([sources.options])")
        try:
            model = self.registry.options_model(source.connector)
        except ConfigurationError as exc:
            raise self.fail(where, "connector", exc.message) from None
        options = self.read_secret_files(options, model, where, "options")
        config = self.validate(
            model,
            options,
            where,
            "options",
            lambda data: self.registry.validate_options(source.connector, data),
        )
        return source.model_copy(update={"options": config})


def _table_models(models: tuple[type[BaseModel], ...], name: str) -> tuple[type[BaseModel], ...]:
    """The models a nested table ``name`` of ``models`` may be (all members of a union)."""
    found: list[type[BaseModel]] = []

    def collect(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.append(annotation)
            return
        for arg in typing.get_args(annotation):
            collect(arg)

    for model in models:
        field = model.model_fields.get(name)
        if field is not None:
            collect(field.annotation)
    return tuple(found)


def _dotted(prefix: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    key = str(key)
    if not prefix or not key:
        return prefix or key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    registry: ConnectorOptions,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read and validate a ``fragment.toml``.

    ``path`` defaults to ``$FRAGMENT_CONFIG`` or ``./fragment.toml``; ``registry`` (the
    connectors, e.g. ``fragment_core.plugins.get_registry()``) validates each source's
    options; ``env`` (for ``${VAR}``) to :data:`os.environ`.
    Raises :class:`ConfigurationError` naming the file, the source and the key.
    """
    file = config_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"configuration file not found (give a path, --config or ${CONFIG_ENV})",
            where=str(file),
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read: {exc.strerror or exc}", where=str(file)) from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}",
            where=str(file),
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"invalid TOML: {exc}", where=str(file)) from None
    return _Loader(file, os.environ if env is None else env, registry).load(raw)
