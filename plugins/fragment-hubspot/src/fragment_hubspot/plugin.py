"""Entry point of the ``fragment`` plugin group: registers the ``hubspot`` connector."""

from __future__ import annotations

from collections.abc import Callable

from fragment_core import hookimpl
from fragment_core.connector import Connector
from fragment_hubspot.connector import HubSpotConnector


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register :class:`HubSpotConnector` under the name ``hubspot``."""
    register(HubSpotConnector)
