"""``fragment new-connector``: the generated package is complete and its tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.testing.scaffold import ConnectorNames, create_connector_package


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(cwd / "src")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_generated_package_tests_pass_in_a_fresh_folder(tmp_path: Path) -> None:
    target = tmp_path / "fragment-acme-tickets"
    result = CliRunner().invoke(cli, ["new-connector", "acme-tickets", "--path", str(target)])
    assert result.exit_code == 0, result.output
    assert "Created fragment-acme-tickets" in result.output

    module = target / "src" / "fragment_acme_tickets"
    for path in (
        target / "README.md",
        module / "__init__.py",
        module / "connector.py",
        module / "plugin.py",
        target / "tests" / "conftest.py",
        target / "tests" / "test_contract.py",
    ):
        assert path.is_file(), f"{path.name} was not generated"
    project = tomllib.loads((target / "pyproject.toml").read_text())
    assert project["project"]["name"] == "fragment-acme-tickets"
    assert project["project"]["entry-points"]["fragment"] == {
        "acme-tickets": "fragment_acme_tickets.plugin"
    }
    placeholders = ("__NAME__", "__DIST__", "__MODULE__", "__CLASS__", "__TITLE__", "__ENV__")
    for path in target.rglob("*"):
        assert not any(p in str(path) for p in placeholders)
        if path.is_file():
            assert not any(p in path.read_text() for p in placeholders), path.name

    tests = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], target)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
    lint = _run(["-m", "ruff", "check", "--no-cache", "."], target)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(["-m", "ruff", "format", "--check", "--no-cache", "."], target)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_default_path_is_under_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["new-connector", "ledger"])
    assert result.exit_code == 0, result.output
    package = tmp_path / "plugins" / "fragment-ledger"
    connector = (package / "src" / "fragment_ledger" / "connector.py").read_text()
    assert 'name = "ledger"' in connector and "class LedgerConnector(" in connector


def test_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["new-connector", "Acme Tickets", "--path", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "connector name 'Acme Tickets' is not valid" in bad.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    taken = runner.invoke(cli, ["new-connector", "acme", "--path", str(tmp_path / "taken")])
    assert taken.exit_code != 0 and "already exists" in taken.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "name,dist,module,cls",
    [
        ("acme", "fragment-acme", "fragment_acme", "Acme"),
        ("acme-tickets", "fragment-acme-tickets", "fragment_acme_tickets", "AcmeTickets"),
        ("back_office2", "fragment-back-office2", "fragment_back_office2", "BackOffice2"),
    ],
)
def test_names(name: str, dist: str, module: str, cls: str) -> None:
    names = ConnectorNames.parse(name)
    assert (names.dist, names.module, names.class_prefix) == (dist, module, cls)


def test_create_returns_every_file(tmp_path: Path) -> None:
    files = create_connector_package("acme", tmp_path / "pkg")
    assert sorted(p.name for p in files) == sorted(
        p.name for p in (tmp_path / "pkg").rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(
    "name,what",
    [
        ("file", "built-in"),
        ("http", "built-in"),
        ("hubspot", "official"),
        ("stripe", "official"),
        ("stripe-efw", "official"),
        ("zendesk", "official"),
        ("intercom", "official"),
        ("complyadvantage", "official"),
        ("complyadvantage-mesh", "official"),
        ("complyadvantage_mesh", "official"),
    ],
)
def test_refuses_names_of_builtin_and_official_connectors(
    name: str, what: str, tmp_path: Path
) -> None:
    target = tmp_path / "pkg"
    result = CliRunner().invoke(cli, ["new-connector", name, "--path", str(target)])
    assert result.exit_code != 0
    article = "an" if what == "official" else "a"
    assert f"connector name {name!r} is taken: it is {article} {what} connector" in result.output
    assert not target.exists()


def test_official_names_are_those_connectors_list_all_shows() -> None:
    from fragment_core.plugins import OFFICIAL_CONNECTORS

    listed = CliRunner().invoke(cli, ["connectors", "list", "--all"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    for name in OFFICIAL_CONNECTORS:
        assert name in listed.output
        with pytest.raises(ValueError, match="official connector"):
            ConnectorNames.parse(name)


def test_next_steps_work_in_a_fresh_venv(tmp_path: Path) -> None:
    target = tmp_path / "fragment-acme"
    result = CliRunner().invoke(cli, ["new-connector", "acme", "--path", str(target)])
    assert result.exit_code == 0, result.output
    assert f'pip install -e "{target}[test]"' in result.output
    assert f"python -m pytest {target / 'tests'}" in result.output
    extras = tomllib.loads((target / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("pytest") for dep in extras["optional-dependencies"]["test"])


# A tickets API, completed by hand from the generated connector: page-number paging with a
# page count, a Bearer token, and a write-back closing the ticket (PATCH, skipped if closed).
COMPLETED_CONNECTOR = '''\
"""The `desk` connector: open tickets of the Desk API as Fragment tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
from fragment_core.connector import Completion, Connector, ConnectorConfig, Record
from fragment_core.errors import BadRecordError
from fragment_core.paging import PageNumberPaging, PageRequest, paginate_http
from fragment_core.task import RemoteTask, Task
from fragment_core.transport import BearerAuth, Transport
from pydantic import Field, SecretStr


class DeskConfig(ConnectorConfig):
    """Options of a `desk` source."""

    base_url: str = Field(description="Root URL of the Desk API.")
    token: SecretStr = Field(description="API token, sent as a Bearer token.")
    page_size: int = Field(default=50, ge=1, le=100, description="Tickets per page.")


class DeskConnector(Connector[DeskConfig]):
    """Open Desk tickets; completing a task closes the ticket."""

    name = "desk"
    example_options = {"base_url": "https://desk.example.com/api", "token": "${DESK_TOKEN}"}

    def build_client(self) -> Transport:
        """A Transport sending the token to ``base_url``'s origin only."""
        auth = BearerAuth(self.config.token.get_secret_value())
        return Transport(self.config.base_url.rstrip("/") + "/", auth=auth, name=self.where)

    def _send(self, page: PageRequest) -> tuple[httpx.Response, Any]:
        response = self.client.request(page.method, page.url, params=page.params)
        return response, response.json()

    def check(self) -> str:
        """Is the token accepted?"""
        return f"connected as {self.client.get_json('me')['login']}"

    def fetch_backlog(self) -> Iterator[Record]:
        """Every open ticket, page by page."""
        size = self.config.page_size
        paging = PageNumberPaging(size_param="per_page", size=size, total_pages_path="meta.pages")
        first = PageRequest("GET", "tickets", {"state": "open"})
        items = lambda body, _: body["tickets"]  # noqa: E731
        yield from paginate_http(self._send, first, paging, items, id_of=self.record_id)

    def to_task(self, record: Record) -> Task:
        """A ticket as a task; no id or no subject is a bad record."""
        ticket_id = self.record_id(record)
        if ticket_id is None:
            raise BadRecordError("the ticket has no id", field="id", where=self.where)
        subject = str(record.get("subject") or "").strip()
        if not subject:
            raise BadRecordError("no subject", record_id=ticket_id, field="subject")
        url = f"https://desk.example.com/t/{quote(ticket_id)}"
        return Task.new(external_id=ticket_id, title=subject, url=url)

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Close the ticket unless it is closed already (a retry has no effect)."""
        path = f"tickets/{quote(completion.external_id)}"
        if self.client.get_json(path)["state"] == "closed":
            return "already closed"
        key = {"Idempotency-Key": completion.idempotency_key}
        self.client.request("PATCH", path, json={"state": "closed"}, headers=key)
        return f"closed ticket {completion.external_id}"
'''

COMPLETED_CONFTEST = '''\
"""The Desk API on loopback: a FakeVendor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fragment_core.testing import FakeRequest
from fragment_core.testing.fakevendor import FakeVendor

TOKEN = "desk_fake_93b1d0"


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def vendor() -> Iterator[FakeVendor]:
    tickets = {str(n): {"id": str(n), "subject": f"T{n}", "state": "open"} for n in range(1, 12)}
    vendor = FakeVendor("desk", token=TOKEN)

    @vendor.route("GET", "/api/me")
    def me(req: FakeRequest) -> Any:
        return {"login": "bot"}

    @vendor.route("GET", "/api/tickets", items="tickets")
    def listing(req: FakeRequest) -> Any:
        page, size = int(req.query["page"]), int(req.query["per_page"])
        rows = [t for t in tickets.values() if t["state"] == req.query["state"]]
        pages = (len(rows) + size - 1) // size
        return {"tickets": rows[(page - 1) * size : page * size], "meta": {"pages": pages}}

    @vendor.route("GET", "/api/tickets/{tid}")
    def one(req: FakeRequest) -> Any:
        return tickets.get(req.path_params["tid"]) or vendor.not_found()

    @vendor.route("PATCH", "/api/tickets/{tid}")
    def close(req: FakeRequest) -> Any:
        ticket = tickets.get(req.path_params["tid"])
        if ticket is None:
            return vendor.not_found()
        ticket["state"] = req.json()["state"]
        vendor.effect("close", ticket["id"], req.headers.get("idempotency-key"))
        return ticket

    with vendor.api:
        yield vendor
'''

COMPLETED_CONTRACT = '''\
"""The contract suite against the Desk fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fragment_core.connector import Record
from fragment_core.testing import ConnectorContract
from fragment_core.testing.fakevendor import FakeVendor
from pydantic import SecretStr

from fragment_desk.connector import DeskConfig, DeskConnector


def make(vendor: FakeVendor, token: str) -> DeskConnector:
    config = DeskConfig(base_url=vendor.api.url_for("/api"), token=SecretStr(token), page_size=4)
    return DeskConnector(config, source="desk-test")


class TestDeskContract(ConnectorContract):
    connector_class = DeskConnector

    @pytest.fixture
    def connector(self, vendor: FakeVendor, token: str) -> Iterator[DeskConnector]:
        connector = make(vendor, token)
        yield connector
        connector.close()

    @pytest.fixture
    def bad_connector(self, vendor: FakeVendor) -> Iterator[DeskConnector]:
        connector = make(vendor, "desk_revoked_000")
        yield connector
        connector.close()

    @pytest.fixture
    def backlog_size(self) -> int:
        return 11

    @pytest.fixture
    def malformed_records(self) -> list[Record]:
        return [{"subject": "no id"}, {"id": "7", "subject": "  "}]

    @pytest.fixture
    def secrets(self, token: str) -> list[str]:
        return [token, "desk_revoked_000"]

    @pytest.fixture
    def effect_count(self, vendor: FakeVendor) -> Callable[[str], int]:
        return lambda external_id: vendor.effect_count("close", external_id)

    def test_pages_were_followed(self, connector: DeskConnector, vendor: FakeVendor) -> None:
        assert len(list(connector.fetch_backlog())) == 11
        pages = [r for r in vendor.api.requests if r.path == "/api/tickets"]
        assert len(pages) == 3
        assert all(r.headers["authorization"] == "<redacted>" for r in pages)
'''


def test_a_hand_completed_connector_is_short_and_passes_the_contract(tmp_path: Path) -> None:
    target = tmp_path / "fragment-desk"
    result = CliRunner().invoke(cli, ["new-connector", "desk", "--path", str(target)])
    assert result.exit_code == 0, result.output
    module = target / "src" / "fragment_desk" / "connector.py"
    generated = module.read_text()
    assert "Transport(" in generated and "paginate_http(" in generated
    assert "while " not in generated, "the generated connector hand-writes a request loop"

    module.write_text(COMPLETED_CONNECTOR)
    (target / "tests" / "conftest.py").write_text(COMPLETED_CONFTEST)
    (target / "tests" / "test_contract.py").write_text(COMPLETED_CONTRACT)
    (target / "tests" / "test_connector.py").unlink()  # the template API's own tests
    lines = len(module.read_text().splitlines())
    assert lines < 80, f"the completed connector has {lines} lines"

    tests = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], target)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
    assert "failed" not in tests.stdout
    lint = _run(["-m", "ruff", "check", "--no-cache", "."], target)
    assert lint.returncode == 0, lint.stdout + lint.stderr
