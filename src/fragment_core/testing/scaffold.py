"""``fragment new-connector``. (placeholder, issue 5 replaces it)"""

import click


@click.command("new-connector")
def new_connector_command() -> None:
    """Create a new connector package."""
    raise click.ClickException("not implemented yet")
