"""fragment-core: keep a Fragment task queue in sync with the systems where the work lives."""

from fragment_core.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
