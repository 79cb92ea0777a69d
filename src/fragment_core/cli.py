"""The ``fragment`` command line. (skeleton; issue 3 completes it)"""

import click

from fragment_core import __version__
from fragment_core.sandbox.cli import sandbox_command
from fragment_core.sync.cli import demo_command, run_command, status_command, sync_command
from fragment_core.testing.scaffold import new_connector_command


@click.group()
@click.version_option(__version__, prog_name="fragment")
def cli() -> None:
    """Keep a Fragment task queue in sync with the systems where the work lives."""


for command in (
    sandbox_command,
    sync_command,
    run_command,
    status_command,
    demo_command,
    new_connector_command,
):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``fragment`` script."""
    cli()
