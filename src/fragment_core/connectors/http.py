"""Built-in ``http`` connector. (placeholder; its issue replaces this module)"""

from collections.abc import Callable

from fragment_core.hookspecs import hookimpl


@hookimpl
def fragment_register_connectors(register: Callable) -> None:
    """Register the built-in ``http`` connector."""
