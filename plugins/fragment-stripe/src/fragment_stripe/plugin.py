"""Entry point of the ``fragment`` plugin group: registers ``stripe`` and ``stripe-efw``."""

from __future__ import annotations

from collections.abc import Callable

from fragment_core import hookimpl
from fragment_core.connector import Connector
from fragment_stripe.connector import ReviewsConnector, WarningsConnector


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register :class:`ReviewsConnector` (``stripe``) and :class:`WarningsConnector`
    (``stripe-efw``)."""
    register(ReviewsConnector)
    register(WarningsConnector)
