"""A user mistake on the command line never prints a traceback: a wrong command, option,
value, file or source gives a one-line error (exit 1 or 2), whatever the combination."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragment_core.cli import cli

SECRET = "cli-secret-93be-never-printed"

GOOD = """\
[tasks_api]
url = "http://127.0.0.1:9/api/v1"
token = "${FRAGMENT_TOKEN}"

[state]
url = "sqlite:///state.db"

[[sources]]
name = "sheet"
connector = "file"
[sources.options]
path = "backlog.csv"
"""
BROKEN = {
    "bad-toml.toml": "[tasks_api\nurl = ",
    "bad-key.toml": GOOD.replace("[state]", "[state]\ncolour = 'blue'"),
    "bad-source.toml": GOOD.replace('connector = "file"', 'connector = "nope"'),
    "no-token.toml": GOOD.replace("${FRAGMENT_TOKEN}", "${NOT_SET}"),
    "bad-state.toml": GOOD.replace("sqlite:///state.db", "mysql://db/x"),
    "binary.toml": "\udc80\udcff",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "fragment.toml").write_text(GOOD)
    (folder / "backlog.csv").write_text("id,title\n1,One\n2,\n")
    for name, text in BROKEN.items():
        (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    (folder / "a-directory.toml").mkdir()
    return folder


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    """The Tasks API of the config is a closed port: fail fast instead of backing off."""
    with stamina.set_testing(True, attempts=2):
        yield


def invoke(folder: Path, args: list[str]) -> Result:
    """Run the CLI in a fresh copy of ``folder`` (a command may write its state there)."""
    with tempfile.TemporaryDirectory(dir=folder) as here, contextlib.chdir(here):
        for item in folder.iterdir():
            if item.is_file():
                (Path(here) / item.name).write_bytes(item.read_bytes())
        (Path(here) / "a-directory.toml").mkdir()
        env = {"FRAGMENT_TOKEN": SECRET, "FRAGMENT_CONFIG": None}
        return CliRunner().invoke(cli, args, env=env)


def assert_clean(result: Result, args: list[str]) -> None:
    output = result.output
    assert "Traceback" not in output, (args, output)
    assert SECRET not in output, args
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), (args, repr(result.exception), output)
    assert result.exit_code in (0, 1, 2, 3, 4), (args, result.exit_code, output)


MISTAKES = [
    ["sync"],
    ["sync", "nosuch"],
    ["sync", "sheet", "--dry-rn"],
    ["--config", "missing.toml", "sync", "sheet"],
    ["--config", "a-directory.toml", "status"],
    ["--log-format", "xml", "status"],
    ["connectors", "show", "nope"],
    ["check", "nosuch"],
    ["run", "--once", "--config", "bad-source.toml"],
    ["sandbox", "--faults", "2"],
    ["sandbox", "--rate-limit", "lots"],
    ["sandbox", "--port", "-1"],
    ["frobnicate"],
    *[["--config", name, "sync", "sheet"] for name in BROKEN],
    *[["--config", name, "config", "validate"] for name in BROKEN if name != "bad-state.toml"],
    *[["--config", name, "status"] for name in BROKEN],
]


@pytest.mark.parametrize("args", MISTAKES, ids=[" ".join(a) for a in MISTAKES])
def test_a_user_mistake_prints_an_error_not_a_traceback(folder: Path, args: list[str]) -> None:
    result = invoke(folder, args)
    assert_clean(result, args)
    assert result.exit_code != 0, result.output
    assert "error" in result.output.lower() or "usage" in result.output.lower()


# Commands that do not start servers or loops; words and values that are often wrong.
# (No NUL bytes: a command line cannot hold one.)
WORDS = [
    "sync", "status", "check", "config", "validate", "connectors", "list", "show", "plugins",
    "sheet", "nosuch", "file", "http", "--json", "--dry-run", "--full", "--force-close",
    "--all", "--config", "fragment.toml", "bad-toml.toml", "bad-key.toml", "no-token.toml",
    "bad-state.toml", "binary.toml", "missing.toml", "-v", "-vv", "--log-format", "json",
    "xml", "--help", "-", "--", "", "ü", "--config=",
]  # fmt: skip
SAFE_FIRST = ["sync", "status", "check", "config", "connectors", "plugins", "--config", "-v"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=st.sampled_from(SAFE_FIRST), rest=st.lists(st.sampled_from(WORDS), max_size=5))
def test_random_command_lines_never_print_a_traceback(
    folder: Path, first: str, rest: list[str]
) -> None:
    args = [first, *rest]
    assert_clean(invoke(folder, args), args)
