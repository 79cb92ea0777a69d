"""``fragment sandbox``: run the local Tasks API. (placeholder, issue 2 replaces it)"""

import click


@click.command("sandbox")
def sandbox_command() -> None:
    """Run a local stand-in of the Fragment Tasks API."""
    raise click.ClickException("not implemented yet")
