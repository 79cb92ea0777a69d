"""State faults in words: what went wrong with the state database, and what to do.

A failure of the state database (a read-only or damaged SQLite file, a full disk, a
PostgreSQL server that is down, refuses the password or lacks the database, a state file
deleted under a running process) becomes a :class:`StateError` naming ``[state] url``
(password hidden) with a hint, shown by the CLI as one ``error:`` line.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlalchemy as sa

from fragment_core.errors import FragmentError

__all__ = ["STATE_ERRORS", "StateError", "is_state_failure", "password_of", "state_error"]


class StateError(FragmentError):
    """The state database cannot be used; ``hint`` says what to do."""

    def __init__(self, message: str, *, url: str, hint: str = "") -> None:
        self.url, self.hint = url, hint
        text = f"{message}; {hint}" if hint else message
        super().__init__(text, where=f"[state] url {url}")


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sa.exc.SQLAlchemyError, sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # PostgreSQL support not installed
        pass
    return tuple(errors)


#: Exceptions of SQLAlchemy and the database drivers (raw cursors raise the driver's own).
STATE_ERRORS: tuple[type[BaseException], ...] = _driver_errors()

#: (words in the driver's message, what it means, what to do), first match wins.
_KNOWN: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("database or disk is full", "disk full", "no space left"),
        "the disk of the state database is full",
        "free some space (or move the state to a bigger disk), then run again: what was "
        "written before is kept and nothing is sent twice",
    ),
    (
        ("readonly database", "read-only", "read only"),
        "the state database is read-only",
        "make the file and its folder writable by this user (SQLite also writes FILE-wal "
        "and FILE-shm next to it)",
    ),
    (
        ("file is not a database", "malformed", "disk image", "not a database"),
        "the state database is damaged (not a readable SQLite database)",
        "restore it from a backup, or move it away: a new state is rebuilt from the Tasks "
        "API on the next run (see docs/operating.md)",
    ),
    (
        ("unable to open database file",),
        "the state database file cannot be opened",
        "check that its folder exists and is writable by this user",
    ),
    (
        ("password authentication failed", "authentication failed"),
        "the PostgreSQL server refused the user or password",
        "check the user and password of [state] url (or FRAGMENT_STATE_URL)",
    ),
    (
        ("does not exist",),
        "the PostgreSQL database or role does not exist",
        "create it (createdb NAME) or fix the database name in [state] url",
    ),
    (
        (
            "connection refused",
            "could not connect",
            "connection failed",
            "timeout expired",
            "name or service not known",
            "could not translate host name",
            "server closed",
        ),
        "the PostgreSQL server cannot be reached",
        "check that it runs and that host and port of [state] url are right; the next "
        "run tries again",
    ),
)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0].strip() if text else type(orig).__name__


def state_error(exc: BaseException, url: str, *, secrets: tuple[str, ...] = ()) -> StateError:
    """``exc`` (a SQLAlchemy or driver error) as a :class:`StateError` for ``url`` (shown
    as given: pass it with the password hidden). Never the SQL or its parameters."""
    if isinstance(exc, StateError):
        return exc
    detail = _first_line(exc)
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    lowered = detail.lower()
    for words, meaning, hint in _KNOWN:
        if any(w in lowered for w in words):
            return StateError(f"{meaning} ({detail})", url=url, hint=hint)
    return StateError(
        f"the state database failed ({detail})",
        url=url,
        hint="check the database and the disk it is on, then run again",
    )


def is_state_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the state database."""
    return isinstance(exc, (StateError, *STATE_ERRORS))


def password_of(url: Any) -> tuple[str, ...]:
    """The password of a parsed URL, to keep out of messages."""
    password = getattr(url, "password", None)
    return (str(password),) if password else ()
