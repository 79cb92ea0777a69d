"""Entry point of the ``fragment`` plugin group: registers the ``zendesk`` connector."""

from __future__ import annotations

from collections.abc import Callable

from fragment_core import hookimpl
from fragment_core.connector import Connector
from fragment_zendesk.connector import ZendeskConnector


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register :class:`ZendeskConnector` under the name ``zendesk``."""
    register(ZendeskConnector)
