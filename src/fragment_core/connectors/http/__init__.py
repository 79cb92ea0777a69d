"""Built-in ``http`` connector: an internal REST API connected by configuration alone.

Modules: :mod:`.config` (the options), :mod:`.paging` (pagination styles), :mod:`.paths`
(dotted paths and templates), :mod:`.session` (auth, rate limit, retries),
:mod:`.connector` (the connector), :mod:`.examples` (the annotated example).
"""

from collections.abc import Callable

from fragment_core.connectors.http.config import HttpConfig, parse_options
from fragment_core.connectors.http.connector import HttpConnector
from fragment_core.hookspecs import hookimpl

__all__ = ["HttpConfig", "HttpConnector", "fragment_register_connectors", "parse_options"]


@hookimpl
def fragment_register_connectors(register: Callable) -> None:
    """Register the built-in ``http`` connector."""
    register(HttpConnector)
