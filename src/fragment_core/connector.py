"""The Connector contract: a small class with declarative attributes and a few methods.

A connector turns one kind of source system into tasks::

    class TicketsConnector(Connector[TicketsConfig]):   # Config is TicketsConfig
        name = "tickets"

        def build_client(self):                         # built on first use of self.client
            return TicketsClient(self.config.base_url, self.config.token)

        def fetch_backlog(self):
            yield from self.client.open_tickets()      # every open record, paging inside

        def to_task(self, record):
            return Task.new(external_id=record["id"], title=record["subject"],
                            url=f"https://tickets.example.com/{record['id']}")

        def on_complete(self, task, completion):       # optional write-back
            self.client.close(completion.external_id)

Plugins register connector classes with the ``fragment_register_connectors`` hook.
"""

from __future__ import annotations

import marshal
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, TypeAlias, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

from fragment_core.errors import (
    AuthenticationError,
    BadRecordError,
    ConfigurationError,
    FragmentError,
    RateLimitedError,
    TransientError,
    WriteBackError,
)
from fragment_core.task import RemoteTask, Task, format_datetime

__all__ = [
    "COMPLETION_PLACEHOLDERS",
    "AuthenticationError",
    "BadRecordError",
    "BaseUrl",
    "Capability",
    "Completion",
    "ConfigurationError",
    "Connector",
    "ConnectorConfig",
    "FragmentError",
    "RateLimitedError",
    "Record",
    "TransientError",
    "WriteBackError",
    "placeholders",
]

#: A raw record from a source, as the connector fetched it (usually decoded JSON).
Record: TypeAlias = Mapping[str, Any]


class Capability(StrEnum):
    """What a connector can do beyond fetching its backlog."""

    INCREMENTAL = "incremental"
    """``fetch_changes(cursor)``: records changed since a cursor."""
    WRITE_BACK = "write_back"
    """``on_complete``: writes completion back to the source."""


class ConnectorConfig(BaseModel):
    """Base of every connector's ``Config`` model: unknown options are an error.

    Declare secrets as :class:`pydantic.SecretStr` so they are never printed.
    """

    model_config = ConfigDict(extra="forbid")


ConfigT = TypeVar("ConfigT", bound=ConnectorConfig)


def http_base_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and no query or fragment, without
    its trailing ``/`` (paths are appended to it); ``ValueError`` otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r} must not have a query or fragment")
    return value.rstrip("/")


#: A ``base_url`` option: an http(s) URL (checked by :func:`http_base_url`), no trailing ``/``.
#: Tests point a connector at its fake through it.
BaseUrl = Annotated[str, AfterValidator(http_base_url)]


def placeholders(*names: str) -> AfterValidator:
    """A validator for a text option filled in with :meth:`str.format` (a link template,
    a note): it may use only the ``{name}`` placeholders given, else a ``ValueError``
    naming the option and the placeholders it may use::

        url_template: Annotated[str, placeholders("app_id", "item_id")] = Field(...)
        note: Annotated[str, placeholders("done_at", "uid", "source")] | None = None
    """
    sample = dict.fromkeys(names, 1)
    allowed = ", ".join(f"{{{name}}}" for name in names)

    def check(value: str, info: ValidationInfo) -> str:
        try:
            value.format(**sample)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            option = info.field_name or "the template"
            raise ValueError(f"{option} may use only {allowed}: {exc}") from None
        return value

    return AfterValidator(check)


@dataclass(frozen=True)
class Completion:
    """An operator completed a task; :meth:`Connector.on_complete` writes that back.

    Fields:

    - ``source``: the name of the source the task came from (``[[sources]] name``).
    - ``external_id``: the record's id in the source (what :meth:`Connector.to_task` set).
    - ``uid``: the task's id in the Fragment Tasks API.
    - ``done_at``: when the operator completed it (timezone-aware UTC), or ``None`` when
      the Tasks API did not say.
    - ``outcome``: what the operator entered when completing it (the task's ``form_data``
      in the Tasks API, e.g. ``{"resolution": "refunded"}``); empty when none.
    - ``idempotency_key``: derived from the uid and the completion time, so retries of one
      completion share it (send it where the vendor supports idempotency keys).
    """

    source: str
    external_id: str
    uid: uuid.UUID
    done_at: datetime | None
    outcome: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""

    def fill(self, template: str) -> str:
        """``template`` (a note option) with ``{done_at}`` (ISO 8601, empty when
        unknown), ``{uid}`` and ``{source}`` filled in; validate such an option with
        ``placeholders(*COMPLETION_PLACEHOLDERS)``."""
        done_at = format_datetime(self.done_at) if self.done_at else ""
        return template.format(done_at=done_at, uid=self.uid, source=self.source)


#: The placeholders :meth:`Completion.fill` fills in.
COMPLETION_PLACEHOLDERS = ("done_at", "uid", "source")


class _Capabilities:
    """``capabilities()`` on the class: what it can do (the optional methods it overrides);
    on an instance: what its configuration enables (:meth:`Connector.configured_capabilities`).
    """

    def __get__(
        self, obj: Connector[Any] | None, owner: type[Connector[Any]]
    ) -> Callable[[], frozenset[Capability]]:
        if obj is None:
            return lambda: _class_capabilities(owner)
        return obj.configured_capabilities


def _class_capabilities(cls: type[Connector[Any]]) -> frozenset[Capability]:
    caps = set()
    if cls.fetch_changes is not Connector.fetch_changes:
        caps.add(Capability.INCREMENTAL)
    if cls.on_complete is not Connector.on_complete:
        caps.add(Capability.WRITE_BACK)
    return frozenset(caps)


def _inferred_config(cls: type) -> type[ConnectorConfig] | None:
    """The ``ConfigT`` of ``class X(Connector[ConfigT])``, when it is a concrete class."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Connector):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, ConnectorConfig):
                    return arg
    return None


class Connector(Generic[ConfigT]):
    """Base class of every connector.

    Class attributes (declarative):

    - ``name``: the type key used in configuration (``connector = "zendesk"``).
    - ``Config``: a :class:`ConnectorConfig` subclass; its JSON Schema documents the options.
      Inferred from the generic parameter (``class X(Connector[XConfig])`` has
      ``Config = XConfig``); an explicit ``Config`` attribute still wins.
    - ``id_field``: the record key holding the external id (used to name bad records and to
      count a record that fails to map as still *seen*); override :meth:`record_id` if
      it is not a plain key.
    - ``cursor_field``: for incremental connectors, the record key whose maximum becomes
      the next cursor; override :meth:`cursor_value` if it is not a plain key.
    - ``example_options``: an example ``[sources.options]`` block for documentation
      (``fragment connectors show`` prints a ``[[sources]]`` block built from it).
    - ``example_toml``: optionally, a complete annotated ``[[sources]]`` block; when set,
      ``fragment connectors show`` prints it instead of one built from ``example_options``.

    Capabilities are not declared: overriding :meth:`fetch_changes` gives ``incremental``
    and overriding :meth:`on_complete` gives ``write_back``. ``Cls.capabilities()`` lists
    what the class can do; ``connector.capabilities()`` what this instance's configuration
    enables (override :meth:`configured_capabilities` to narrow it).

    Plumbing every connector gets: :attr:`where` (how errors name the source),
    :attr:`client` (built by :meth:`build_client` on first use, then cached) and
    :meth:`close` (closes the client; the runner calls it when it is done with the source).
    Declare secret options as :class:`pydantic.SecretStr` so they are never printed.

    Methods to override: :meth:`fetch_backlog` and :meth:`to_task` (required),
    :meth:`fetch_changes`, :meth:`on_complete`, :meth:`check`, :meth:`is_open`,
    :meth:`build_client`, :meth:`fingerprint` (for records that are not plain dicts).

    ``mapping_version``: bump it when a new release of the connector maps the same record
    differently, so records unchanged in the source are mapped again (see
    :meth:`fingerprint`; the package version is taken into account too).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    id_field: ClassVar[str] = "id"
    cursor_field: ClassVar[str | None] = None
    example_options: ClassVar[dict[str, Any]] = {}
    example_toml: ClassVar[str | None] = None
    mapping_version: ClassVar[str] = ""
    capabilities: ClassVar[_Capabilities] = _Capabilities()
    _client: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" not in cls.__dict__:
            inferred = _inferred_config(cls)
            if inferred is not None:
                cls.Config = inferred

    def __init__(self, config: ConfigT, *, source: str = "") -> None:
        self.config: ConfigT = config
        self.source = source or self.name

    # -- plumbing -----------------------------------------------------------------------
    @property
    def where(self) -> str:
        """How errors name this source, e.g. ``source 'crm' (hubspot)``."""
        return f"source {self.source!r} ({self.name})" if self.name else f"source {self.source!r}"

    @property
    def client(self) -> Any:
        """The vendor client, built by :meth:`build_client` on first use and then cached."""
        if self._client is None:
            self._client = self.build_client()
        return self._client

    def build_client(self) -> Any:
        """Build the client :attr:`client` returns (an SDK client, a Transport...)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement build_client()")

    def close(self) -> None:
        """Release the client (calling its ``close()`` if it has one).

        The runner calls it when it is done with the source; a later use of :attr:`client`
        builds a new one. Override (calling ``super().close()``) to release more.
        """
        client, self._client = self._client, None
        closer = getattr(client, "close", None)
        if callable(closer):
            closer()

    # -- description --------------------------------------------------------------------
    def configured_capabilities(self) -> frozenset[Capability]:
        """What this instance's configuration enables (``connector.capabilities()``).

        The default is everything the class can do; a connector whose write-back or
        incremental fetch depends on options removes what is not configured.
        """
        return _class_capabilities(type(self))

    @classmethod
    def description(cls) -> str:
        """First paragraph of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.split("\n\n")[0].replace("\n", " ") if doc else ""

    def __repr__(self) -> str:
        # pydantic's repr masks SecretStr values
        return f"<{type(self).__name__} source={self.source!r} config={self.config!r}>"

    # -- the contract ---------------------------------------------------------------------
    def fetch_backlog(self) -> Iterator[Record]:
        """Yield every open record of the source, paging inside. Must be overridden."""
        raise NotImplementedError(f"{type(self).__name__} must implement fetch_backlog()")

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Yield records changed since ``cursor`` (open or not; see :meth:`is_open`).

        Optional: overriding it gives the connector the ``incremental`` capability. The
        runner keeps the largest :meth:`cursor_value` of every fetch, full or incremental
        (numbers compare as numbers, anything else as text: use one fixed format such as
        ISO 8601 UTC), and stores it only after the writes it covers are committed. It
        calls this method only when a cursor is stored and the last complete full fetch
        is younger than the source's ``full_every``. Fetching "at or after" the cursor is
        safe: an unchanged record makes no write.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support incremental fetch")

    def digits_id(self, external_id: str, what: str) -> str:
        """``external_id`` if it is ASCII digits (the vendor's numeric id), for a write-back
        that puts it in a request path; else a :class:`WriteBackError` ("'../x' is not
        ``what`` id ...; nothing sent"), so no id can reach another path."""
        if not external_id.isascii() or not external_id.isdigit():
            raise WriteBackError(
                f"{external_id[:80]!r} is not {what} id (they are digits); nothing sent, "
                "so no id can reach another path",
                where=self.where,
            )
        return external_id

    def time_cursor(self, cursor: str) -> datetime:
        """A stored cursor of an ISO 8601 time (what :meth:`cursor_value` gave, e.g.
        :func:`fragment_core.task.format_datetime`) as an aware datetime (naive: UTC); a
        :class:`ConfigurationError` naming the source and saying how to reset it when the
        stored text is not one."""
        try:
            since = datetime.fromisoformat(cursor.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                f"stored cursor {cursor!r} is not a time; run a full sync to reset it",
                where=self.where,
            ) from None
        return since if since.tzinfo else since.replace(tzinfo=UTC)

    def unix_cursor(self, cursor: str) -> int:
        """A stored cursor of unix seconds (what :meth:`cursor_value` gave) as an ``int``,
        for :meth:`fetch_changes`; a :class:`ConfigurationError` naming the source and
        saying how to reset it when the stored text is not one."""
        try:
            return int(float(cursor))
        except (ValueError, OverflowError):
            raise ConfigurationError(
                f"stored cursor {cursor!r} is not a unix time; run a full sync to reset it",
                where=self.where,
            ) from None

    def to_task(self, record: Record) -> Task:
        """Map one record to a :class:`Task`. Raise :class:`BadRecordError` if it cannot."""
        raise NotImplementedError(f"{type(self).__name__} must implement to_task()")

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Write an operator's completion back to the source. Optional.

        Must be idempotent: it may be called again for the same completion after a crash.
        Return a short description of what was done (shown in reports), or ``None``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no write-back")

    def check(self) -> str:
        """Verify credentials and settings; return a one-line summary of what was reached.

        Raise :class:`AuthenticationError` or :class:`ConfigurationError` with a message a
        person can act on ("the token lacks the crm.objects.tasks.read scope").
        """
        return "no check implemented for this connector"

    def record_id(self, record: Record) -> str | None:
        """The external id of a raw record, or ``None`` when it has none."""
        if type(record) is dict or isinstance(record, Mapping):
            value = record.get(self.id_field)
        else:
            return None
        if type(value) is str:
            return value or None
        return None if value is None else str(value)

    def cursor_value(self, record: Record) -> str | None:
        """The cursor position of a record (for incremental fetches)."""
        if self.cursor_field is None or not isinstance(record, Mapping):
            return None
        value = record.get(self.cursor_field)
        return None if value is None else str(value)

    def fingerprint(self, record: Record) -> bytes | None:
        """Bytes that change whenever anything in ``record`` changes, or ``None``.

        The sync remembers a hash of them for every record it maps; a record whose
        fingerprint is unchanged since then is not mapped again (no :meth:`to_task`, no
        transform hook, no hash: the cheap path of a re-sync). ``None`` means "always
        map this record". The default serializes a plain ``dict`` of JSON values (what
        decoded JSON, CSV rows and most SDKs' dict results are) and returns ``None`` for
        anything else; override it for SDK objects, e.g. ``return obj.to_json().encode()``,
        only when those bytes cover every attribute :meth:`to_task` reads.
        """
        if type(record) is not dict:
            return None
        try:
            return marshal.dumps(record, 2)  # version 2: no back-references, so stable
        except ValueError:  # a value that is not plain data (a datetime, an object...)
            return None

    def is_open(self, record: Record) -> bool:
        """Whether a record fetched by :meth:`fetch_changes` is still in the backlog.

        Records from :meth:`fetch_backlog` are always open. Override for incremental
        connectors whose changes include records that were resolved in the source.
        """
        return True
