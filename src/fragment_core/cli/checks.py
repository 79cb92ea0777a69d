"""What ``fragment check`` checks besides the sources: the destination (the Tasks API
reachable, its token accepted, the account it names) and the state store (reachable
and writable; each source's state bound to this Tasks API)."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from fragment_core.config import Settings
from fragment_core.errors import AuthenticationError, FragmentError, TransientError
from fragment_core.state import schema
from fragment_core.state.probe import probe_state
from fragment_core.sync.destination import Destination

log = logging.getLogger(__name__)


def check_tasks_api(settings: Settings) -> tuple[dict[str, Any], Destination | None]:
    """``GET /accounts/me`` with the configured token: the check's result, and the
    destination it names (``None`` when it failed)."""
    from fragment_core.tasks_api import TasksClient

    api = settings.tasks_api
    result: dict[str, Any] = {"check": "tasks_api", "target": api.url, "ok": False}
    destination = None
    try:
        with TasksClient(  # few quick retries: a person is waiting
            api.url,
            api.token,
            rate_limit=api.rate_limit,
            timeout=10.0,
            retry_attempts=2,
            retry_timeout=15.0,
            retry_wait_max=2.0,
        ) as client:
            destination = Destination.from_answer(api.url, client.me())
        account = destination.describe().removeprefix(destination.url).strip(" ()")
        result["ok"] = True
        result["message"] = f"reachable, token accepted, {account or 'no account named'}"
        result["account"] = destination.to_dict()
    except AuthenticationError as exc:
        result["message"] = f"token rejected: {exc}"
    except TransientError as exc:
        result["message"] = f"unreachable or failing: {exc}"
    except FragmentError as exc:
        result["message"] = f"error: {exc}"
    _log(result)
    return result, destination


def check_state(settings: Settings, destination: Destination | None) -> list[dict[str, Any]]:
    """The state store's check, then one failing result per source whose state belongs
    to another Tasks API than ``destination``."""
    probe = probe_state(settings.state.url)
    result: dict[str, Any] = {
        "check": "state",
        "target": probe.url,
        "ok": probe.ok,
        "message": probe.message,
    }
    results = [result]
    _log(result)
    if not probe.ok or destination is None or (probe.schema_version or 0) < 4:
        return results
    for name, recorded in _destinations(settings.state.url):
        if recorded.same_as(destination):
            continue
        mismatch = {
            "check": "destination",
            "source": name,
            "ok": False,
            "message": f"the state of source {name!r} belongs to the Tasks API at "
            f"{recorded.describe()}, not this one: a run is refused (exit code 6); "
            f"`fragment sync {name} --rebind` rebuilds it from this Tasks API",
        }
        _log(mismatch)
        results.append(mismatch)
    return results


def _destinations(url: str) -> list[tuple[str, Destination]]:
    """``(source, destination)`` of every source the state has bound."""
    engine = sa.create_engine(url, hide_parameters=True)
    table = schema.sources
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    table.c.name,
                    table.c.destination_url,
                    table.c.destination_account,
                    table.c.destination_name,
                ).where(table.c.destination_url.is_not(None))
            ).all()
    finally:
        engine.dispose()
    return [(name, Destination(u, account, label)) for name, u, account, label in rows]


def print_line(console: Any, result: dict[str, Any]) -> None:
    """One ``✓``/``✗`` line of a check result other than a source's."""
    from rich.markup import escape

    mark = "[green]✓[/]" if result["ok"] else "[red]✗[/]"
    what = {"tasks_api": "Tasks API", "state": "state", "destination": "destination"}
    label = what.get(result["check"], result["check"])
    target = result.get("target") or result.get("source") or ""
    console.print(f"{mark} {label} {escape(target)}: {escape(result['message'])}")


def _log(result: dict[str, Any]) -> None:
    log.info(
        "check of the %s: %s",
        result["check"].replace("_", " "),
        "ok" if result["ok"] else "failed",
        extra={"ok": result["ok"]},
    )
