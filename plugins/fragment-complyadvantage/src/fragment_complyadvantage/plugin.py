"""Entry point of the ``fragment`` plugin group: registers both ComplyAdvantage connectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fragment_complyadvantage.mesh import MeshConnector
from fragment_complyadvantage.searches import SearchesConnector
from fragment_core import hookimpl
from fragment_core.connector import Connector


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    """Register ``complyadvantage`` (searches) and ``complyadvantage-mesh`` (cases)."""
    register(SearchesConnector)
    register(MeshConnector)
