"""Which Tasks API a source's state belongs to (its *destination*), checked by every run.

The state says which tasks exist; it is only true of the Tasks API it was built
against. So the first run of a source records that destination (the Tasks API's url
and the account ``GET /accounts/me`` names) and every later run compares: a run
against another destination (sandbox to production, another account, a sandbox
started anew) is refused with :class:`DestinationMismatchError`, which says what to
do, rather than trusting a state that describes tasks the new Tasks API never had.
``fragment sync --rebind`` (or ``fragment state rebuild``) accepts the new destination:
the source's state is rebuilt from it (see :mod:`fragment_core.sync.rebuild`).

Two destinations are the same when both name an account and the accounts are equal
(a new url of the same account, a proxy, is the same Tasks API); else when their urls
are equal. A state written before destinations were recorded (schema version 3) is
bound by its next run, unless it holds records of the source and the Tasks API holds
no task of it: then it was built against another Tasks API, and the run is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from fragment_core.errors import FragmentError
from fragment_core.state import SourceState, StateStore
from fragment_core.state.store import utcnow
from fragment_core.sync.ports import TasksApi
from fragment_core.task import SOURCE_FIELD

log = logging.getLogger(__name__)

#: Keys of the ``GET /accounts/me`` answer that may hold the account's id, in order.
ACCOUNT_ID_KEYS = ("uid", "id", "account_uid")
#: Keys that may hold its name, in order.
ACCOUNT_NAME_KEYS = ("name", "email")


def normalize_url(url: str) -> str:
    """``url`` with its scheme and host in lower case, no default port, no trailing
    slash: the form destinations are compared in."""
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL:
        return url.strip().rstrip("/")
    scheme = parsed.scheme.lower()
    port = parsed.port
    default = {"http": 80, "https": 443}.get(scheme)
    host = parsed.host.lower()
    netloc = host if port is None or port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{parsed.path.rstrip('/')}"


@dataclass(frozen=True)
class Destination:
    """A Tasks API: its url, and the account its credentials belong to."""

    url: str
    account: str | None = None
    """The account's id (``None`` when ``GET /accounts/me`` names none)."""
    name: str | None = None
    """The account's name, for people."""

    @classmethod
    def from_answer(cls, url: str, answer: Mapping[str, Any]) -> Destination:
        """The destination at ``url`` whose ``GET /accounts/me`` answered ``answer``."""
        account = next((answer[k] for k in ACCOUNT_ID_KEYS if answer.get(k)), None)
        name = next((answer[k] for k in ACCOUNT_NAME_KEYS if answer.get(k)), None)
        return cls(
            normalize_url(url),
            None if account is None else str(account),
            None if name is None else str(name),
        )

    @classmethod
    def of(cls, client: TasksApi) -> Destination:
        """The destination ``client`` writes to (asks ``GET /accounts/me``, or its cache)."""
        return cls.from_answer(client.url, client.account())

    @classmethod
    def recorded(cls, state: SourceState) -> Destination | None:
        """The destination a source's state is bound to, or ``None``."""
        if state.destination_url is None:
            return None
        return cls(state.destination_url, state.destination_account, state.destination_name)

    def same_as(self, other: Destination) -> bool:
        """Whether ``other`` is this Tasks API (same account, else same url)."""
        if self.account is not None and other.account is not None:
            return self.account == other.account
        return self.url == other.url

    def describe(self) -> str:
        """``URL (account NAME, ID)`` for messages."""
        parts = [p for p in (self.name and repr(self.name), self.account) if p]
        return f"{self.url} (account {', '.join(parts)})" if parts else self.url

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready dict."""
        return {"url": self.url, "account": self.account, "name": self.name}


class DestinationMismatchError(FragmentError):
    """The source's state belongs to another Tasks API: the run was refused (nothing
    ran). ``recorded`` is the destination of the state, ``current`` the configured one."""

    def __init__(
        self,
        source: str,
        recorded: Destination | None,
        current: Destination,
        *,
        reason: str | None = None,
    ) -> None:
        self.source, self.recorded, self.current = source, recorded, current
        if reason is None:
            assert recorded is not None
            reason = (
                f"the state of source {source!r} belongs to the Tasks API at "
                f"{recorded.describe()}, but [tasks_api] points at {current.describe()}"
            )
        super().__init__(
            f"{reason}. Nothing was synced: the state would say these tasks exist when "
            "this Tasks API does not have them. To sync the source into this Tasks API, "
            f"run `fragment sync {source} --rebind` (or `fragment state rebuild {source}`): "
            "its state is rebuilt from this Tasks API and missing tasks are created. "
            "If [tasks_api] is wrong, set its url and token back."
        )


def bind(store: StateStore, source: str, destination: Destination) -> None:
    """Record ``destination`` as the one ``source``'s state belongs to (a freshly bound
    state counts as verified: it was just built from, or written to, that Tasks API)."""
    state = store.source_state(source)
    now = utcnow()
    changes: dict[str, Any] = {
        "destination_url": destination.url,
        "destination_account": destination.account,
        "destination_name": destination.name,
        "bound_at": now,
    }
    if state.last_verified is None:
        changes["last_verified"] = now
    store.update_source_state(source, **changes)
    log.info(
        "state bound to its Tasks API",
        extra={"source": source, "destination": destination.url, "account": destination.account},
    )


def check_destination(
    source: str,
    client: TasksApi,
    store: StateStore,
    *,
    dry_run: bool = False,
) -> Destination:
    """Compare the configured Tasks API with the one ``source``'s state belongs to.

    Returns the current destination; binds it when the state names none (not in a dry
    run). Raises :class:`DestinationMismatchError` when the state belongs to another
    Tasks API, or when an unbound state holds records of the source and the Tasks API
    holds no task of it. Errors of ``GET /accounts/me`` (a refused token, the API
    down) propagate.
    """
    current = Destination.of(client)
    state = store.source_state(source)
    recorded = Destination.recorded(state)
    if recorded is None:
        if store.has_records(source) and not _has_any_task(client, source):
            raise DestinationMismatchError(
                source,
                None,
                current,
                reason=(
                    f"the state holds records of source {source!r}, but the Tasks API at "
                    f"{current.describe()} holds no task of it: the state was built against "
                    "another Tasks API (or every task of the source was deleted)"
                ),
            )
        if not dry_run:
            bind(store, source, current)
        return current
    if not recorded.same_as(current):
        raise DestinationMismatchError(source, recorded, current)
    if not dry_run and (recorded.url, recorded.name) != (current.url, current.name):
        # the same account at a new url (or renamed): keep what it is called now
        store.update_source_state(
            source, destination_url=current.url, destination_name=current.name
        )
    return current


def _has_any_task(client: TasksApi, source: str) -> bool:
    """Whether the Tasks API lists at least one task of ``source`` (one page of one)."""
    listing = iter(client.list_tasks(fields={SOURCE_FIELD: source}, page_size=1))
    try:
        return next(listing, None) is not None
    finally:
        close = getattr(listing, "close", None)
        if close is not None:
            close()
