"""``fragment check`` checks the destination too: the Tasks API reachable, its token
accepted, the account it names; the state store reachable and writable, each source's
state bound to this Tasks API. The ``file`` connector's check reads every line.

A check used to pass with a wrong Tasks API token (it only asked the connectors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fragment_core.cli import cli
from fragment_core.connectors.file import write_sample
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import SCHEMA_VERSION
from fragment_core.sync.destination import normalize_url


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


def _config(tmp_path: Path, url: str, backlog: Path, state: Path | None = None) -> Path:
    state = state or tmp_path / "state" / "state.db"
    config = tmp_path / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{url}"\ntoken = "${{FRAGMENT_TOKEN}}"\n\n'
        f'[state]\nurl = "sqlite:///{state.as_posix()}"\n\n'
        f'[[sources]]\nname = "kyc"\nconnector = "file"\n'
        f'[sources.options]\npath = "{backlog.as_posix()}"\n'
    )
    return config


def _check(config: Path, token: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(config), "check", *args], env={"FRAGMENT_TOKEN": token}
    )


def test_a_wrong_tasks_api_token_fails_the_check(sandbox: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox.url, write_sample(tmp_path / "b.csv", 3))
    wrong = _check(config, "not-the-token")
    assert wrong.exit_code == 1, wrong.output
    first = wrong.stdout.splitlines()[0]
    assert first.startswith(f"✗ Tasks API {sandbox.url}: token rejected")
    assert "✓ kyc (file): b.csv: 3 open rows" in wrong.output  # the source itself is fine
    assert "not-the-token" not in wrong.output

    good = _check(config, sandbox.token)
    assert good.exit_code == 0, good.output
    lines = good.stdout.splitlines()
    assert lines[0].startswith(f"✓ Tasks API {sandbox.url}: reachable, token accepted, account")
    assert "Sandbox account" in lines[0]
    assert lines[1].startswith("✓ state sqlite:///") and "does not exist yet" in lines[1]
    assert not (tmp_path / "state").exists()  # a check creates nothing
    assert lines[2] == "✓ kyc (file): b.csv: 3 open rows"

    data = json.loads(_check(config, sandbox.token, "--json").stdout)
    assert [r["check"] for r in data] == ["tasks_api", "state", "source"]
    assert data[0]["account"]["url"] == normalize_url(sandbox.url)


def test_an_unreachable_tasks_api_fails_the_check(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/api/v1", write_sample(tmp_path / "b.csv"))
    result = _check(config, "any")
    assert result.exit_code == 1
    assert result.stdout.startswith("✗ Tasks API http://127.0.0.1:9/api/v1: unreachable")


def test_the_state_store_is_checked_reachable_writable_and_bound(
    sandbox: Any, tmp_path: Path
) -> None:
    backlog = write_sample(tmp_path / "b.csv", 2)
    state = tmp_path / "state.db"
    config = _config(tmp_path, sandbox.url, backlog, state)
    env = {"FRAGMENT_TOKEN": sandbox.token}
    synced = CliRunner().invoke(cli, ["--config", str(config), "sync", "kyc"], env=env)
    assert synced.exit_code == 0, synced.output
    result = _check(config, sandbox.token)
    assert result.exit_code == 0, result.output
    assert "✓ state sqlite:///" in result.output
    assert f"reachable and writable (schema version {SCHEMA_VERSION})" in result.output

    with run_sandbox(token=sandbox.token) as other:  # another Tasks API, same token
        moved = _check(_config(tmp_path, other.url, backlog, state), other.token)
    assert moved.exit_code == 1
    assert "✗ destination kyc: the state of source 'kyc' belongs to the Tasks API at" in (
        moved.output
    )
    assert "fragment sync kyc --rebind" in moved.output

    # read-only: opened so by SQLite (a file mode would not stop root, who runs CI)
    read_only_config = tmp_path / "read-only.toml"
    read_only_config.write_text(
        config.read_text().replace(
            f"sqlite:///{state.as_posix()}", f"sqlite:///file:{state.as_posix()}?mode=ro&uri=true"
        )
    )
    before = state.read_bytes()
    read_only = _check(read_only_config, sandbox.token)
    assert read_only.exit_code == 1, read_only.output
    assert "✗ state sqlite:///" in read_only.output and "read-only" in read_only.output
    assert state.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("b.csv", "key,title\n1,One\n", "b.csv has no column 'id' (options.id_column)"),
        ("b.csv", "", "b.csv has no header line"),
        (
            "b.jsonl",
            '{"id": "1", "title": "One"}\n{"id": "2", "title": "Two"}\n{"id": "3", "title":\n',
            "b.jsonl: 1 unreadable line: line 3 is not JSON",
        ),
        (
            "b.jsonl",
            '{"id": "1", "title": "One"}\n{"key": "2", "title": "Two"}\n[1]\n',
            "b.jsonl: 2 unreadable lines: line 2 has no 'id' (options.id_column); "
            "line 3 is not a JSON object",
        ),
        ("b.csv", "id,title\n1,One\n,Two\n", "line 3: the id column 'id' is empty"),
    ],
)
def test_the_file_check_reads_every_line(
    sandbox: Any, tmp_path: Path, name: str, content: str, expected: str
) -> None:
    backlog = tmp_path / name
    backlog.write_text(content)
    result = _check(_config(tmp_path, sandbox.url, backlog), sandbox.token, "kyc")
    assert result.exit_code == 1, result.output
    line = [x for x in result.stdout.splitlines() if x.startswith("✗ kyc (file)")]
    assert line and expected in line[0], result.output


def test_the_file_check_counts_rows_that_would_not_map(sandbox: Any, tmp_path: Path) -> None:
    backlog = tmp_path / "b.csv"
    backlog.write_text("id,title\n1,One\n2,\n3,Three\n")
    result = _check(_config(tmp_path, sandbox.url, backlog), sandbox.token, "kyc")
    assert result.exit_code == 0, result.output
    assert (
        "✓ kyc (file): b.csv: 3 open rows; 1 would not become tasks (bad records, reported "
        "by each sync; the first: line 3: the title column is empty)"
    ) in result.output


def test_the_state_probe_on_postgres_changes_nothing_and_hides_the_password(
    postgres_url: str,
) -> None:
    import sqlalchemy as sa

    from fragment_core.state import StateStore
    from fragment_core.state.probe import probe_state

    autocommit = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS probe_check")
        conn.exec_driver_sql("CREATE DATABASE probe_check")
    autocommit.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/probe_check"
    empty = probe_state(url)
    assert empty.ok and "holds no state yet" in empty.message
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []  # the probe created nothing
    engine.dispose()
    StateStore(url).close()
    expected = f"reachable and writable (schema version {SCHEMA_VERSION})"
    assert probe_state(url).message == expected
    wrong = url.replace("fragment@", "fragment:s3cret-pw@").replace("probe_check", "nosuch")
    refused = probe_state(wrong)
    assert not refused.ok and "s3cret-pw" not in refused.message + refused.url
