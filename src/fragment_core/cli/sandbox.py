"""``fragment sandbox``: run the local stand-in of the Fragment Tasks API."""

from __future__ import annotations

import secrets

import click
from pydantic import SecretStr

from fragment_core.sandbox.operator import LOGIN_PATH
from fragment_core.sandbox.runner import (
    OPERATOR_TOKEN_ENV,
    READY_PREFIX,
    TOKEN_ENV,
    _bind,
    _url_host,
    serve,
)
from fragment_core.sandbox.settings import (
    DEFAULT_MAX_BATCH,
    SandboxSettings,
    parse_duration,
    parse_rate,
)


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


SANDBOX_EXAMPLES = """\b
Examples:
  fragment sandbox --token dev-token                   API at http://127.0.0.1:8765/api/v1
  fragment sandbox --port 0 --db sandbox.db            a free port; tasks kept in a file
  fragment sandbox --rate-limit 60/min --latency 25ms  behave like the real API
  fragment sandbox --faults 0.1 --seed 7               10% of requests fail, reproducibly
"""


@click.command("sandbox", epilog=SANDBOX_EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option(
    "--db", default=":memory:", show_default=True, help="SQLite file, or :memory: for none."
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"API token clients must send (env {TOKEN_ENV}); random and printed if unset.",
)
@click.option(
    "--operator-token",
    envvar=OPERATOR_TOKEN_ENV,
    default=None,
    help=f"Login token of the operator page (env {OPERATOR_TOKEN_ENV}); random if unset. "
    "The sign-in URL is printed on start.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Host name the operator page answers to besides IP addresses and localhost "
    "(repeatable).",
)
@click.option("--rate-limit", callback=_rate, help="Answer 429 past this budget, e.g. 60/min.")
@click.option(
    "--faults",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of API requests answered 500/502/503/429 or with a dropped connection.",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault draws (reproducible).")
@click.option("--latency", default="0ms", callback=_duration, help="Delay per response, e.g. 25ms.")
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=DEFAULT_MAX_BATCH,
    show_default=True,
    help="Most items per batch request.",
)
@click.option(
    "--fault-retry-after",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Retry-After (seconds) of injected 429 faults.",
)
def sandbox_command(
    host: str,
    port: int,
    db: str,
    token: str | None,
    operator_token: str | None,
    allowed_hosts: tuple[str, ...],
    rate_limit: object,
    faults: float,
    seed: int | None,
    latency: float,
    max_batch: int,
    fault_retry_after: float,
) -> None:
    """Run a local stand-in of the Fragment Tasks API (operator page at /)."""
    generated = token is None
    settings = SandboxSettings(
        token=SecretStr(token or secrets.token_urlsafe(24)),
        db=db,
        rate_limit=rate_limit,  # type: ignore[arg-type]
        faults=faults,
        seed=seed,
        latency=latency,
        max_batch=max_batch,
        fault_retry_after=fault_retry_after,
        operator_token=SecretStr(operator_token or secrets.token_urlsafe(18)),
        allowed_hosts=tuple(allowed_hosts),
    )
    try:
        sock = _bind(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound_host, bound_port = sock.getsockname()[:2]
    base = f"http://{_url_host(bound_host)}:{bound_port}"
    click.echo(f"{READY_PREFIX}{base}/api/v1", nl=True)
    if generated:
        click.echo(f"token (generated for this run): {settings.token.get_secret_value()}")
    login = f"{base}{LOGIN_PATH}?token={settings.operator_token.get_secret_value()}"
    click.echo(f"operator page (sign in): {login}   API schema: {base}/openapi.json", err=True)
    serve(settings, sock).run(sockets=[sock])
