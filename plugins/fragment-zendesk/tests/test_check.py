"""`fragment check` for a zendesk source says what is wrong, in words to act on, no secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from fragment_zendesk.testing import FakeZendesk

from fragment_core.cli import cli

from .test_end_to_end import _write_config


def _check(config: Path, env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)


def test_check_names_bad_token_unknown_subdomain_and_missing_permission(
    zendesk: FakeZendesk, sandbox: Any, tmp_path: Path
) -> None:
    zendesk.add_tickets(3)
    config = _write_config(tmp_path, sandbox, zendesk)
    env = {"FRAGMENT_TOKEN": sandbox.token, "ZENDESK_TOKEN": zendesk.api_token}
    ok = _check(config, env)
    assert ok.exit_code == 0, ok.output
    assert "3 unsolved tickets match" in ok.output

    env["ZENDESK_TOKEN"] = "zd-rotated-long-ago"
    bad = _check(config, env)
    assert bad.exit_code != 0
    assert f"rejected the API token of {zendesk.email}" in bad.output
    assert "Zendesk API" in bad.output  # where to make a new one
    assert "zd-rotated-long-ago" not in bad.output

    env["ZENDESK_TOKEN"] = zendesk.api_token
    zendesk.role = "end-user"
    denied = _check(config, env)
    assert denied.exit_code != 0
    assert "must belong to an agent" in denied.output
    assert zendesk.api_token not in denied.output

    zendesk.no_help_desk()
    unknown = _check(config, env)
    assert unknown.exit_code != 0
    assert "no Zendesk account at" in unknown.output and "check the subdomain" in unknown.output
    assert zendesk.api_token not in unknown.output


def test_a_forbidden_listing_says_the_permission_is_missing(zendesk: FakeZendesk) -> None:
    from fragment_zendesk import ZendeskConnector

    from fragment_core.errors import AuthenticationError

    connector = ZendeskConnector(zendesk.config(), source="support")
    zendesk.role = "end-user"
    try:
        list(connector.fetch_backlog())
    except AuthenticationError as exc:
        assert "lacks the permission" in exc.message and "agent role" in exc.message
    else:
        raise AssertionError("a 403 did not fail the fetch")
