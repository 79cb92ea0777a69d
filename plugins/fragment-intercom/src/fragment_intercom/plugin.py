"""Entry point of the ``fragment`` plugin group: registers the ``intercom`` connector."""

from __future__ import annotations

from collections.abc import Callable

from fragment_core import hookimpl
from fragment_core.connector import Connector
from fragment_intercom.connector import IntercomConnector


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register :class:`IntercomConnector` under the name ``intercom``."""
    register(IntercomConnector)
