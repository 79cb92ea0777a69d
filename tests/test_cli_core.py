"""The core commands of ``fragment``: plugins, connectors, config validate, check, logging."""

from __future__ import annotations

import io
import json
import logging
import re
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr

from fragment_core import __version__, hookimpl
from fragment_core.cli import cli
from fragment_core.cli.support import CliState
from fragment_core.connector import Connector, ConnectorConfig
from fragment_core.errors import AuthenticationError
from fragment_core.logs import configure_logging, source_context
from fragment_core.plugins import get_plugin_manager, new_plugin_manager
from fragment_core.retries import RetryPolicy
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.transport import Transport

REPO = Path(__file__).resolve().parents[1]


class DeskConfig(ConnectorConfig):
    """Options of the desk connector."""

    subdomain: str
    token: SecretStr


class Desk(Connector[DeskConfig]):
    """Tickets of a help desk.

    More text that is not part of the description.
    """

    name = "desk"
    Config = DeskConfig
    example_options = {"subdomain": "acme", "token": "${DESK_TOKEN}", "tags": ["a", "b"]}

    def check(self) -> str:
        if self.config.token.get_secret_value() == "wrong":
            raise AuthenticationError("token rejected by desk (401)")
        return f"reached {self.config.subdomain}.desk.test"

    def on_complete(self, task, completion) -> None:
        return None


class DeskPlugin:
    @hookimpl
    def fragment_register_connectors(self, register: Callable[[type[Connector]], None]) -> None:
        register(Desk)


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run ``fragment ARGS`` in tmp_path with the built-ins plus the desk plugin."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FRAGMENT_CONFIG", raising=False)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    monkeypatch.setattr(root, "level", root.level)

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        pm = new_plugin_manager(entrypoints=False)
        pm.register(DeskPlugin(), name="desk-plugin")
        state = CliState(plugin_manager=pm)
        return CliRunner().invoke(cli, list(args), obj=state, env=env, catch_exceptions=False)

    return run


CONFIG = """
[tasks_api]
token = "api-token"

[[sources]]
name = "support"
connector = "desk"
[sources.options]
subdomain = "acme"
token = "${DESK_TOKEN}"

[[sources]]
name = "legacy"
connector = "desk"
[sources.options]
subdomain = "old"
token = "wrong"
"""


def test_version_and_help(invoke: Callable[..., Result]) -> None:
    result = invoke("--version")
    assert result.output == f"fragment, version {__version__}\n"
    result = invoke("--help")
    assert "Examples:" in result.output and "fragment connectors show http" in result.output
    for command in ("plugins", "connectors", "config", "check", "sync", "sandbox"):
        assert command in result.output


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fragment_core", "--version"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout == f"fragment, version {__version__}\n"


def test_plugins_lists_versions_and_hooks(invoke: Callable[..., Result]) -> None:
    rows = json.loads(invoke("plugins", "--json").output)
    assert rows[0]["name"] == "fragment_core.connectors.file" and rows[0]["builtin"] is True
    assert rows[0]["version"] == __version__
    desk = next(r for r in rows if r["name"] == "desk-plugin")
    assert desk["hooks"] == ["fragment_register_connectors"]
    text = invoke("plugins", env={"COLUMNS": "200"}).output
    assert "desk-plugin" in text and "fragment_register_connectors" in text


def test_plugin_that_fails_to_import_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "fragment_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fragment-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fragment]\nbroken = cli_broken_plugin\n")
    (tmp_path / "cli_broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FRAGMENT_LOAD_PLUGINS", "broken")
    get_plugin_manager.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["plugins", "--json"])
    finally:
        get_plugin_manager.cache_clear()
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: plugin 'broken' from distribution fragment-broken failed to load and was "
        "skipped: RuntimeError: boom at import\n"
    )
    assert all(row["builtin"] for row in json.loads(result.stdout))


def test_connectors_list(invoke: Callable[..., Result]) -> None:
    rows = json.loads(invoke("connectors", "list", "--json").output)
    desk = next(r for r in rows if r["name"] == "desk")
    assert desk["capabilities"] == ["write_back"] and desk["installed"] is True
    assert not any(r["name"] == "zendesk" for r in rows)
    rows = json.loads(invoke("connectors", "list", "--all", "--json").output)
    zendesk = next(r for r in rows if r["name"] == "zendesk")
    assert zendesk == {
        "name": "zendesk",
        "package": "fragment-zendesk",
        "version": None,
        "capabilities": [],
        "installed": False,
        "install": "pip install ./plugins/fragment-zendesk"
        " (from a clone of the fragment-core repository)",
    }
    text = invoke("connectors", "list", "--all", env={"COLUMNS": "200"}).output
    assert "desk" in text and "write_back" in text and "not installed" in text


def test_connectors_show(invoke: Callable[..., Result]) -> None:
    data = json.loads(invoke("connectors", "show", "desk", "--json").output)
    assert data["description"] == "Tickets of a help desk."
    assert data["config_schema"]["required"] == ["subdomain", "token"]
    assert data["example"] == (
        '[[sources]]\nname = "desk"\nconnector = "desk"\nevery = "5m"\n[sources.options]\n'
        'subdomain = "acme"\ntoken = "${DESK_TOKEN}"\ntags = ["a", "b"]\n'
    )
    text = invoke("connectors", "show", "desk", env={"COLUMNS": "200"}).output
    assert "Tickets of a help desk." in text
    rows = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["subdomain", "string", "(required)", ""],
        ["token", "secret string", "(required)", ""],
    ]
    assert data["example"] in text


def test_connectors_show_not_installed(invoke: Callable[..., Result]) -> None:
    result = invoke("connectors", "show", "zendesk")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: connector 'zendesk' is not installed; it is provided by the package "
        "fragment-zendesk: pip install ./plugins/fragment-zendesk"
        " (from a clone of the fragment-core repository)\n"
    )
    assert "Traceback" not in result.output


def test_config_validate(invoke: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "prod.toml").write_text(CONFIG)
    env = {"DESK_TOKEN": "desk-secret"}
    result = invoke("config", "validate", "prod.toml", env=env)
    assert result.exit_code == 0
    assert result.output == "✓ prod.toml is valid: 2 sources: support (desk), legacy (desk)\n"
    data = json.loads(
        invoke("--config", "prod.toml", "config", "validate", "--json", env=env).output
    )
    assert data == {
        "path": "prod.toml",
        "valid": True,
        "sources": [
            {"name": "support", "connector": "desk", "enabled": True},
            {"name": "legacy", "connector": "desk", "enabled": True},
        ],
    }
    result = invoke("config", "validate", env={**env, "FRAGMENT_CONFIG": "prod.toml"})
    assert result.exit_code == 0 and "prod.toml is valid" in result.output


def test_config_validate_errors(invoke: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "fragment.toml").write_text(CONFIG)
    result = invoke("config", "validate")
    assert result.exit_code == 2
    assert result.stderr == (
        'error: fragment.toml: sources[0] "support" (desk): options.token: environment '
        "variable DESK_TOKEN is not set (used as ${DESK_TOKEN})\n"
    )
    result = invoke("config", "validate", "missing.toml")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: missing.toml: configuration file not found (give a path, --config or "
        "$FRAGMENT_CONFIG)\n"
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox(token="api-token") as handle:
        yield handle


def _sandbox_config(sandbox: Any) -> str:
    """CONFIG with its Tasks API on the sandbox (``fragment check`` reaches it)."""
    return CONFIG.replace("[tasks_api]\n", f'[tasks_api]\nurl = "{sandbox.url}"\n', 1)


def test_check(invoke: Callable[..., Result], tmp_path: Path, sandbox: Any) -> None:
    (tmp_path / "fragment.toml").write_text(_sandbox_config(sandbox))
    env = {"DESK_TOKEN": "desk-secret"}
    result = invoke("check", env=env)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"✓ Tasks API {sandbox.url}: reachable, token accepted, account")
    assert lines[1] == (
        "✓ state sqlite:///fragment-state.db: fragment-state.db does not exist yet; the "
        "first run creates it (its folder is writable)"
    )
    assert lines[2:] == [
        "✓ support (desk): reached acme.desk.test",
        "✗ legacy (desk): credentials rejected: token rejected by desk (401)",
    ]
    result = invoke("check", "support", "--json", env=env)
    assert result.exit_code == 0
    checks = json.loads(result.stdout)
    assert [c["check"] for c in checks] == ["tasks_api", "state", "source"]
    assert checks[2] == {
        "check": "source",
        "source": "support",
        "connector": "desk",
        "ok": True,
        "message": "reached acme.desk.test",
    }
    result = invoke("check", "billing", env=env)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no source named 'billing' in fragment.toml; configured sources: support, legacy\n"
    )


def test_json_log_lines() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(1, "json", stream=stream)
    try:
        logging.getLogger("fragment_core.test").info("synced %d tasks", 3, extra={"source": "x"})
        logging.getLogger("fragment_core.test").debug("not shown at -v")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    line = json.loads(stream.getvalue())
    assert (line["level"], line["logger"], line["message"], line["source"]) == (
        "info", "fragment_core.test", "synced 3 tasks", "x",
    )  # fmt: skip
    assert len(stream.getvalue().splitlines()) == 1


def test_text_log_lines_carry_their_extras() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(0, "text", stream=stream)
    try:
        logging.getLogger("fragment_core.test").warning("paused", extra={"wait_seconds": 2})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert stream.getvalue() == "WARNING fragment_core.test: paused (wait_seconds=2)\n"


def _flaky_api() -> FakeAPI:
    api = FakeAPI(name="flaky")
    calls = {"n": 0}

    @api.route("GET", "/tickets")
    def tickets(req: FakeRequest) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            return FakeResponse(503, {"error": "busy"})
        return {"items": []}

    return api


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_one_log_line_per_retry_in_our_words(log_format: str) -> None:
    """Issue 20.5: a retry is one line naming source, operation, attempt and wait; no raw
    ``stamina.retry_scheduled`` records; every line emitted while a source syncs names it."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(0, log_format, stream=stream)  # type: ignore[arg-type]
    policy = RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.02)
    try:
        with (
            _flaky_api() as api,
            Transport(api.base_url, retry=policy, name="desk") as http,
            source_context("support"),
        ):
            assert http.get_json("/tickets", operation="list tickets") == {"items": []}
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "stamina" not in stream.getvalue()
    if log_format == "json":
        records = [json.loads(line) for line in lines]
        assert [(r["source"], r["operation"], r["attempt"], r["error"]) for r in records] == [
            ("support", "list tickets", 1, "TransientError"),
            ("support", "list tickets", 2, "TransientError"),
        ]
        assert all(r["level"] == "warning" and r["wait_seconds"] >= 0 for r in records)
    else:
        assert lines[0].startswith(
            "WARNING fragment_core.retries: support: list tickets failed (attempt 1): HTTP 503:"
        ), lines[0]
        assert re.search(r"; retrying in \d+\.\d s", lines[0]) and "source=support" in lines[0]
        assert "(attempt 2)" in lines[1]


def test_cli_docs_are_up_to_date() -> None:
    generator = runpy.run_path(str(REPO / "scripts" / "gen_cli_docs.py"))
    expected = generator["render"]()
    actual = (REPO / "docs" / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is out of date: run python scripts/gen_cli_docs.py"


def test_log_format_json_and_verbosity(
    invoke: Callable[..., Result], tmp_path: Path, sandbox: Any
) -> None:
    (tmp_path / "fragment.toml").write_text(_sandbox_config(sandbox))
    env = {"DESK_TOKEN": "desk-secret"}
    result = invoke("--log-format", "json", "-v", "check", "support", env=env)
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    ours = [x for x in lines if x["logger"].startswith("fragment_core.cli")]
    assert [(x["level"], x["message"], x.get("source"), x["ok"]) for x in ours] == [
        ("info", "check of the tasks api: ok", None, True),
        ("info", "check of the state: ok", None, True),
        ("info", "check of source support: ok", "support", True),
    ]
    assert "desk-secret" not in result.stderr and "api-token" not in result.stderr
    result = invoke("check", "support", env=env)  # default: warnings only
    assert result.stderr == ""
    result = invoke("-v", "check", "support", env=env)  # text lines when not a terminal
    text = [x for x in result.stderr.splitlines() if x.startswith("INFO fragment_core.cli")]
    assert text == [
        "INFO fragment_core.cli.checks: check of the tasks api: ok (ok=True)",
        "INFO fragment_core.cli.checks: check of the state: ok (ok=True)",
        "INFO fragment_core.cli: check of source support: ok (source=support, ok=True)",
    ]


def test_connectors_show_prints_an_annotated_example_when_the_connector_has_one(
    invoke: Callable[..., Result],
) -> None:
    result = invoke("connectors", "show", "http")
    assert result.exit_code == 0, result.output
    assert "# auth: type =" in result.output  # the comments of HttpConnector.example_toml
    assert 'connector = "http"' in result.output
