"""Logging of the ``fragment`` CLI: rich on a terminal, plain text otherwise, or JSON lines;
and the source context the engine sets (light: rich is imported only for a terminal)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Literal

LogFormat = Literal["text", "json"]

#: Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


#: The source being synced in this context (thread or task), for :class:`SourceFilter`.
_current_source: ContextVar[str | None] = ContextVar("fragment_log_source", default=None)


@contextmanager
def source_context(name: str) -> Iterator[None]:
    """Every log record emitted in this context carries ``source=name`` (see
    :class:`SourceFilter`). Threads started inside must copy the context to inherit it."""
    token = _current_source.set(name)
    try:
        yield
    finally:
        _current_source.reset(token)


def current_source() -> str | None:
    """The name of the source being synced in this context, if any."""
    return _current_source.get()


class SourceFilter(logging.Filter):
    """Adds ``source`` to records emitted while a source is synced (unless already set),
    so every JSON line about a source names it."""

    def filter(self, record: logging.LogRecord) -> bool:
        source = _current_source.get()
        if source is not None and getattr(record, "source", None) is None:
            record.source = source
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """What was passed with ``extra=`` (e.g. stamina's attempt and cause of a retry)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """The message followed by its extras as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " (" + ", ".join(f"{k}={v}" for k, v in extras.items()) + ")"
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not at setup)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def level_for(verbosity: int) -> int:
    """``0`` -> WARNING, ``1`` (-v) -> INFO, ``2`` or more (-vv) -> DEBUG."""
    return {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


def configure_logging(
    verbosity: int = 0, log_format: LogFormat = "text", stream: IO[str] | None = None
) -> logging.Handler:
    """Send log records to ``stream`` (default: the current stderr); replaces an earlier one.

    Records carry the source being synced (:class:`SourceFilter`), and retries are logged
    one line each in our words (:func:`fragment_core.retries.log_retries`).
    Returns the handler (remove it from the root logger to undo).
    """
    from fragment_core.retries import log_retries

    log_retries()
    handler: logging.Handler
    if log_format == "text" and (stream or sys.stderr).isatty():
        from rich.console import Console  # here: the engine imports this module, not rich
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream or sys.stderr), show_path=False)
        handler.setFormatter(TextFormatter("%(message)s"))
    else:
        handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
        formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
        handler.setFormatter(JsonFormatter() if log_format == "json" else formatter)
    handler.set_name("fragment")
    handler.addFilter(SourceFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "fragment"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_for(verbosity))
    return handler
