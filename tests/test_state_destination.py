"""The state knows which Tasks API it belongs to (its destination).

A state pointed at another Tasks API (sandbox to production, another account, a new
sandbox) used to report ``ok`` and exit 0 while creating nothing: it trusted records
of tasks the new Tasks API never had. Now the run is refused (exit 6) with what to do,
``--rebind`` rebuilds the state from the new Tasks API, and a state file written before
destinations were recorded (schema version 3) is migrated and bound on its next run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fragment_core.cli import cli
from fragment_core.config import SourceSettings
from fragment_core.connectors.file import FileConfig, FileConnector, write_sample
from fragment_core.reports import RunOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import SCHEMA_VERSION, StateStore
from fragment_core.state.store import utcnow
from fragment_core.sync.destination import (
    Destination,
    DestinationMismatchError,
    normalize_url,
)
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, task_uid


@pytest.fixture
def two_sandboxes() -> Iterator[tuple[Any, Any]]:
    """Two Tasks APIs with the same token: only their url and account tell them apart."""
    with run_sandbox(token="same-token") as first, run_sandbox(token="same-token") as second:
        yield first, second


def _config(tmp_path: Path, sandbox: Any, backlog: Path) -> Path:
    config = tmp_path / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken = "${{FRAGMENT_TOKEN}}"\nrate_limit = 0\n\n'
        f'[state]\nurl = "sqlite:///{(tmp_path / "state.db").as_posix()}"\n\n'
        f'[[sources]]\nname = "kyc"\nconnector = "file"\n'
        f'[sources.options]\npath = "{backlog.as_posix()}"\n'
    )
    return config


def _fragment(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(config), *args], env={"FRAGMENT_TOKEN": "same-token"}
    )


def _tasks(sandbox: Any, source: str = "kyc") -> list[Any]:
    with sandbox.client() as client:
        return list(client.list_tasks(fields={SOURCE_FIELD: source}))


def test_a_state_pointed_at_another_tasks_api_is_refused_then_rebound(
    two_sandboxes: tuple[Any, Any], tmp_path: Path
) -> None:
    old, new = two_sandboxes
    backlog = write_sample(tmp_path / "backlog.csv", 6)
    first = _fragment(_config(tmp_path, old, backlog), "sync", "kyc", "--json")
    assert first.exit_code == 0, first.output
    assert len(_tasks(old)) == 6

    # [tasks_api] now points at another Tasks API: the run is refused, nothing written
    config = _config(tmp_path, new, backlog)
    refused = _fragment(config, "sync", "kyc")
    assert refused.exit_code == 6, refused.output
    message = " ".join(refused.stderr.split())
    assert message.startswith("error: the state of source 'kyc' belongs to the Tasks API at")
    assert normalize_url(old.url) in message and normalize_url(new.url) in message
    assert "fragment sync kyc --rebind" in message and "fragment state rebuild kyc" in message
    assert _tasks(new) == []
    assert _fragment(config, "run", "--once").exit_code == 6  # fragment run refuses too
    assert _tasks(new) == []

    # a dry run asks nothing of the Tasks API, but says a real run would be refused
    dry = _fragment(config, "sync", "kyc", "--dry-run")
    assert dry.exit_code == 0 and "a real run is refused unless --rebind" in dry.output

    rebound = _fragment(config, "sync", "kyc", "--rebind", "--json")
    assert rebound.exit_code == 0, rebound.output
    assert '"created": 6' in rebound.output
    assert len(_tasks(new)) == 6 and len(_tasks(old)) == 6
    again = _fragment(config, "sync", "kyc", "--json")
    assert again.exit_code == 0 and '"created": 0' in again.output
    store = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
    state = store.source_state("kyc")
    assert state.destination_url == normalize_url(new.url) and state.bound_at is not None
    store.close()
    # and back to the old one: refused again, the state now belongs to the new one
    assert _fragment(_config(tmp_path, old, backlog), "sync", "kyc").exit_code == 6


def test_another_account_at_the_same_url_is_another_destination(
    two_sandboxes: tuple[Any, Any], tmp_path: Path
) -> None:
    old, _new = two_sandboxes
    store = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
    connector = FileConnector(FileConfig(path=write_sample(tmp_path / "b.csv", 3)), source="kyc")
    source = SourceSettings(name="kyc", connector="file")
    with old.client(rate_limit=None) as client:
        assert sync_source(source, connector, client, store).created == 3
        here = Destination.of(client)
    # the state remembers the account; the same url with another account is refused
    store.update_source_state("kyc", destination_account="another-account")
    with (
        old.client(rate_limit=None) as client,
        pytest.raises(DestinationMismatchError, match="another-account"),
    ):
        sync_source(source, connector, client, store)
    # the same account at a new url (a proxy, a new host name) is the same Tasks API
    store.update_source_state("kyc", destination_account=here.account, destination_url="x")
    with old.client(rate_limit=None) as client:
        assert sync_source(source, connector, client, store).outcome == RunOutcome.OK
    assert store.source_state("kyc").destination_url == normalize_url(old.url)
    store.close()


def _downgrade_to_schema_3(path: Path) -> None:
    """Turn a state file into what fragment-core wrote at schema version 3 (no
    destination columns)."""
    with sqlite3.connect(path) as db:
        for column in (
            "destination_url",
            "destination_account",
            "destination_name",
            "bound_at",
            "last_verified",
        ):
            db.execute(f"ALTER TABLE fragment_sources DROP COLUMN {column}")
        db.execute("DROP TABLE IF EXISTS fragment_rate_slots")  # schema version 5
        db.execute("UPDATE fragment_schema_version SET version = 3")


def test_a_schema_3_state_is_migrated_and_bound_or_refused(
    two_sandboxes: tuple[Any, Any], tmp_path: Path
) -> None:
    old, new = two_sandboxes
    path = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{path.as_posix()}")
    connector = FileConnector(FileConfig(path=write_sample(tmp_path / "b.csv", 4)), source="kyc")
    source = SourceSettings(name="kyc", connector="file")
    with old.client(rate_limit=None) as client:
        assert sync_source(source, connector, client, store).created == 4
    store.close()
    _downgrade_to_schema_3(path)

    # version 3, pointed at a Tasks API that has none of its tasks: refused
    store = StateStore(f"sqlite:///{path.as_posix()}")
    assert store.schema_version == SCHEMA_VERSION == 5
    assert store.source_state("kyc").destination_url is None
    assert len(store.records("kyc")) == 4  # nothing lost by the migration
    with (
        new.client(rate_limit=None) as client,
        pytest.raises(DestinationMismatchError, match="holds no task of it"),
    ):
        sync_source(source, connector, client, store)
    assert store.source_state("kyc").destination_url is None
    # pointed at the Tasks API it was built against: bound, and syncs as before
    with old.client(rate_limit=None) as client:
        report = sync_source(source, connector, client, store)
    assert (report.outcome, report.created, report.unchanged) == (RunOutcome.OK, 0, 4)
    state = store.source_state("kyc")
    assert state.destination_url == normalize_url(old.url)
    assert state.destination_account is not None and state.last_verified is not None
    store.close()


def test_destination_urls_compare_in_a_normal_form() -> None:
    assert normalize_url("HTTPS://API.Example.com:443/api/v1/") == "https://api.example.com/api/v1"
    assert normalize_url("http://127.0.0.1:8080/api/v1") == "http://127.0.0.1:8080/api/v1"
    a = Destination.from_answer("https://a.example/api/v1", {"uid": "1", "name": "Acme"})
    assert a.describe() == "https://a.example/api/v1 (account 'Acme', 1)"
    assert a.same_as(Destination("https://b.example/api/v1", "1"))
    assert not a.same_as(Destination("https://a.example/api/v1", "2"))
    assert Destination("u").same_as(Destination("u")) and not Destination("u").same_as(
        Destination("v")
    )


@pytest.fixture
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


def _remove_rows(path: Path, *ids: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if line.split(",")[0] not in ids))


def test_a_verifying_run_repairs_tasks_deleted_or_changed_in_the_tasks_api(
    sandbox: Any, tmp_path: Path
) -> None:
    store = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
    backlog = write_sample(tmp_path / "b.csv", 8)
    connector = FileConnector(FileConfig(path=backlog), source="kyc")
    source = SourceSettings(name="kyc", connector="file")
    client = sandbox.client(rate_limit=None)
    assert sync_source(source, connector, client, store).created == 8
    # someone else deletes two tasks, edits one, and adds a custom field to another
    client.delete_task(task_uid("kyc", "C-0001"))
    client.delete_task(task_uid("kyc", "C-0002"))
    client.patch_task(task_uid("kyc", "C-0003"), {"fields": {"title": "edited by hand"}})
    client.patch_task(task_uid("kyc", "C-0004"), {"fields": {"note": "theirs"}})
    plain = sync_source(source, connector, client, store)
    assert (plain.created, plain.updated, plain.verified) == (0, 0, 0)  # not seen
    assert len(_tasks(sandbox)) == 6

    _remove_rows(backlog, "C-0002")  # one deleted task's record leaves the source too
    verifying = sync_source(source, connector, client, store, verify=True)
    assert verifying.outcome == RunOutcome.OK, verifying.messages
    assert (verifying.verified, verifying.recreated, verifying.rewritten) == (6, 1, 1)
    assert (verifying.created, verifying.updated, verifying.closed) == (1, 1, 0)
    assert any("verified 6 tasks" in m for m in verifying.messages)
    tasks = {t.external_id: t for t in _tasks(sandbox)}
    assert sorted(tasks) == [f"C-000{i}" for i in (1, 3, 4, 5, 6, 7, 8)]
    assert tasks["C-0003"].title != "edited by hand"
    assert tasks["C-0004"].fields["note"] == "theirs"  # an added field is left alone
    assert store.record("kyc", "C-0002") is None
    quiet = sync_source(source, connector, client, store)
    assert (quiet.created, quiet.updated, quiet.closed, quiet.verified) == (0, 0, 0, 0)

    # verify_every: due once the last verification is older than it
    client.delete_task(task_uid("kyc", "C-0005"))
    store.update_source_state("kyc", last_verified=utcnow() - timedelta(hours=25))
    due = sync_source(source, connector, client, store)
    assert (due.recreated, due.created) == (1, 1)
    assert utcnow() - store.source_state("kyc").last_verified < timedelta(minutes=1)
    client.delete_task(task_uid("kyc", "C-0006"))
    store.update_source_state("kyc", last_verified=utcnow() - timedelta(days=30))
    never = SourceSettings(name="kyc", connector="file", verify_every="never")
    assert never.verify_every is None
    assert sync_source(never, connector, client, store).created == 0
    client.close()
    store.close()
