"""The ``fragment`` script: SIGTERM is remembered from the first moment, then the CLI."""

from __future__ import annotations


def main() -> None:
    """Entry point of the ``fragment`` script and of ``python -m fragment_core``."""
    from fragment_core.signals import install_early

    install_early()
    from fragment_core.cli import main as cli_main

    cli_main()
