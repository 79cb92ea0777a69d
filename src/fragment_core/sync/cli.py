"""``fragment sync|run|status|demo``. (placeholder, issue 4 replaces it)"""

import click


@click.command("sync")
def sync_command() -> None:
    """Run one sync of one source."""
    raise click.ClickException("not implemented yet")


@click.command("run")
def run_command() -> None:
    """Run every source at its interval."""
    raise click.ClickException("not implemented yet")


@click.command("status")
def status_command() -> None:
    """Show each source's last run."""
    raise click.ClickException("not implemented yet")


@click.command("demo")
def demo_command() -> None:
    """A guided demo on the local sandbox."""
    raise click.ClickException("not implemented yet")
