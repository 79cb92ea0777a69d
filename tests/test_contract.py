"""The connector contract suite: a correct toy connector passes it, each kind of broken
connector fails the test meant to catch it (with a message that says what is wrong)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import Field, SecretStr

from fragment_core.connector import Completion, Connector, ConnectorConfig, Record
from fragment_core.errors import AuthenticationError, BadRecordError
from fragment_core.retries import raise_for_response
from fragment_core.task import RemoteTask, Task
from fragment_core.testing import ConnectorContract, FakeAPI, FakeRequest, FakeResponse

TOKEN = "tok_contract_5ecret_value"
BAD_TOKEN = "tok_revoked_value_9"
BACKLOG = 7
log = logging.getLogger("toy-connector")


class ToyConfig(ConnectorConfig):
    """Options of the toy connector."""

    base_url: str = Field(description="Root URL of the toy API.")
    token: SecretStr = Field(description="Bearer token.")


class ToyConnector(Connector[ToyConfig]):
    """Open toy items; completing a task closes the item."""

    name = "toy"
    Config = ToyConfig

    @property
    def where(self) -> str:
        return f"source {self.source!r}"

    def _call(self, method: str, url: str, **params: Any) -> Any:
        if not url.startswith("http"):
            url = self.config.base_url + url
        headers = {"Authorization": f"Bearer {self.config.token.get_secret_value()}"}
        response = httpx.request(method, url, params=params or None, headers=headers)
        raise_for_response(response, where=self.where)
        return response.json() if response.content else None

    def check(self) -> str:
        try:
            return f"hello {self._call('GET', '/me')['name']}"
        except AuthenticationError:
            raise AuthenticationError(
                "the token was rejected; set a valid one in [sources.options].token",
                where=self.where,
            ) from None

    def fetch_backlog(self) -> Iterator[Record]:
        url: str | None = "/items"
        while url:
            page = self._call("GET", url)
            yield from page["items"]
            url = page["next"]

    def to_task(self, record: Record) -> Task:
        item_id = self.record_id(record)
        if item_id is None:
            raise BadRecordError("no id", field="id", where=self.where)
        if not record.get("title"):
            raise BadRecordError("no title", record_id=item_id, field="title", where=self.where)
        return Task.new(
            external_id=item_id, title=record["title"], url=f"https://toy.test/{item_id}"
        )

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        if self._call("GET", f"/items/{completion.external_id}")["open"]:
            self._call("POST", f"/items/{completion.external_id}/close")
        return "closed"


def build_toy_api() -> FakeAPI:
    api = FakeAPI(name="toy")
    items = {str(n): {"id": str(n), "title": f"Item {n}", "open": True} for n in range(BACKLOG)}
    denied = FakeResponse(status=401, json={"error": "bad token"})

    def ok(req: FakeRequest) -> bool:
        return req.headers.get("authorization") == f"Bearer {TOKEN}"

    @api.route("GET", "/me")
    def me(req: FakeRequest) -> Any:
        return {"name": "bot"} if ok(req) else denied

    @api.route("GET", "/items")
    def list_items(req: FakeRequest) -> Any:
        if not ok(req):
            return denied
        start = int(req.query.get("start", "0"))
        page = [i for i in items.values() if i["open"]][start : start + 3]
        more = start + 3 < BACKLOG
        return {"items": page, "next": api.url_for("/items", start=start + 3) if more else None}

    @api.route("GET", "/items/{item_id}")
    def get_item(req: FakeRequest) -> Any:
        return items[req.path_params["item_id"]] if ok(req) else denied

    @api.route("POST", "/items/{item_id}/close")
    def close(req: FakeRequest) -> Any:
        if not ok(req):
            return denied
        items[req.path_params["item_id"]]["open"] = False
        api.effect(f"close:{req.path_params['item_id']}")
        return None

    return api


@pytest.fixture
def toy_api() -> Iterator[FakeAPI]:
    with build_toy_api() as api:
        yield api


def make(api: FakeAPI, cls: type[ToyConnector] = ToyConnector, token: str = TOKEN) -> Any:
    return cls(ToyConfig(base_url=api.base_url, token=SecretStr(token)), source="toys")


class TestToyContract(ConnectorContract):
    """The whole suite, run as a connector package runs it."""

    connector_class = ToyConnector

    @pytest.fixture
    def connector(self, toy_api: FakeAPI) -> Connector[Any]:
        return make(toy_api)

    @pytest.fixture
    def bad_connector(self, toy_api: FakeAPI) -> Connector[Any]:
        return make(toy_api, token=BAD_TOKEN)

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Record]:
        return [{"title": "no id"}, {"id": "9"}]

    @pytest.fixture
    def secrets(self) -> list[str]:
        return [TOKEN, BAD_TOKEN]

    @pytest.fixture
    def effect_count(self, toy_api: FakeAPI) -> Callable[[str], int]:
        return lambda external_id: toy_api.effects[f"close:{external_id}"]


# -- broken connectors: each must be caught --------------------------------------------------
def contract(cls: type[Connector[Any]] = ToyConnector) -> ConnectorContract:
    suite = ConnectorContract()
    suite.connector_class = cls  # type: ignore[misc]
    return suite


def fails(match: str, fn: Callable[..., Any], *args: Any) -> None:
    with pytest.raises((AssertionError, pytest.fail.Exception), match=match):
        fn(*args)


def test_stopping_after_the_first_page_is_caught(toy_api: FakeAPI) -> None:
    class FirstPageOnly(ToyConnector):
        def fetch_backlog(self) -> Iterator[Record]:
            yield from self._call("GET", "/items")["items"]

    fails(
        "yielded 3 records, the fake serves 7",
        contract().test_fetch_backlog_pages_to_the_end,
        make(toy_api, FirstPageOnly),
        BACKLOG,
    )


def test_duplicate_records_are_caught(toy_api: FakeAPI) -> None:
    class Repeats(ToyConnector):
        def fetch_backlog(self) -> Iterator[Record]:
            records = list(super().fetch_backlog())
            yield from [*records[:-1], records[0]]

    fails(
        "more than once",
        contract().test_fetch_backlog_pages_to_the_end,
        make(toy_api, Repeats),
        BACKLOG,
    )


def test_unstable_ids_are_caught(toy_api: FakeAPI) -> None:
    class RandomIds(ToyConnector):
        def to_task(self, record: Record) -> Task:
            task = super().to_task(record)
            fields = {**task.fields.model_dump(), "external_id": f"{record['id']}-{uuid.uuid4()}"}
            return task.model_copy(update={"fields": type(task.fields)(**fields)})

    fails(
        "uids changed", contract().test_uids_and_hashes_stable_across_runs, make(toy_api, RandomIds)
    )
    fails("record_id", contract().test_to_task_gives_valid_tasks, make(toy_api, RandomIds))


def test_changing_content_is_caught(toy_api: FakeAPI) -> None:
    class Clock(ToyConnector):
        def to_task(self, record: Record) -> Task:
            task = super().to_task(record)
            return task.model_copy(
                update={
                    "fields": type(task.fields)(
                        **task.fields.model_dump(), fetched=str(uuid.uuid4())
                    )
                }
            )

    fails(
        "changed content", contract().test_uids_and_hashes_stable_across_runs, make(toy_api, Clock)
    )


def test_missing_url_is_caught(toy_api: FakeAPI) -> None:
    class NoUrl(ToyConnector):
        def to_task(self, record: Record) -> Task:
            return Task.new(external_id=record["id"], title=record["title"])

    fails("not an http", contract().test_to_task_gives_valid_tasks, make(toy_api, NoUrl))


def test_non_idempotent_write_back_is_caught(toy_api: FakeAPI) -> None:
    class Twice(ToyConnector):
        def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
            self._call("POST", f"/items/{completion.external_id}/close")
            return "closed"

    fails(
        "had 2 effects, expected 1",
        contract().test_on_complete_is_idempotent,
        make(toy_api, Twice),
        lambda eid: toy_api.effects[f"close:{eid}"],
    )


def test_connector_without_write_back_skips_with_a_reason(toy_api: FakeAPI) -> None:
    class ReadOnly(Connector[ToyConfig]):
        name = "read-only"
        Config = ToyConfig

    with pytest.raises(pytest.skip.Exception, match="has no write-back"):
        contract(ReadOnly).test_on_complete_is_idempotent(make(toy_api, ReadOnly), lambda e: 0)


def test_vague_or_leaky_check_errors_are_caught(toy_api: FakeAPI) -> None:
    class Vague(ToyConnector):
        def check(self) -> str:
            raise AuthenticationError("HTTP 401")

    class Leaky(ToyConnector):
        def check(self) -> str:
            token = self.config.token.get_secret_value()
            raise AuthenticationError(f"token {token} rejected", where=self.where)

    suite = contract()
    bad = [TOKEN, BAD_TOKEN]
    fails(
        "does not name the connector or source",
        suite.test_check_rejects_bad_credentials,
        make(toy_api, Vague, BAD_TOKEN),
        bad,
    )
    fails(
        "secret value appears in the check",
        suite.test_check_rejects_bad_credentials,
        make(toy_api, Leaky, BAD_TOKEN),
        bad,
    )
    with pytest.raises(AuthenticationError):  # a good check() refuses a bad token
        suite.test_check_succeeds(make(toy_api, token=BAD_TOKEN))


def test_secret_in_repr_or_logs_is_caught(
    toy_api: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    class LeakyRepr(ToyConnector):
        def __repr__(self) -> str:
            return f"<toy {self.config.token.get_secret_value()}>"

    class LeakyLogs(ToyConnector):
        def fetch_backlog(self) -> Iterator[Record]:
            log.debug("fetching with %s", self.config.token.get_secret_value())
            yield from super().fetch_backlog()

    suite, bad = contract(), [TOKEN, BAD_TOKEN]
    test = suite.test_secrets_absent_from_reprs_errors_and_logs
    fails(
        r"appears in repr\(connector\)",
        test,
        make(toy_api, LeakyRepr),
        make(toy_api, token=BAD_TOKEN),
        bad,
        caplog,
    )
    caplog.clear()
    fails(
        "appears in the logs",
        test,
        make(toy_api, LeakyLogs),
        make(toy_api, token=BAD_TOKEN),
        bad,
        caplog,
    )

    caplog.clear()
    fails(
        "lists no secret, but the Config has secret options: token",
        test,
        make(toy_api),
        make(toy_api, token=BAD_TOKEN),
        [],
        caplog,
    )


def test_wrong_malformed_record_errors_are_caught(toy_api: FakeAPI) -> None:
    class Crashes(ToyConnector):
        def to_task(self, record: Record) -> Task:
            return Task.new(external_id=record["id"], title=record["title"], url="https://x")

    class Anonymous(ToyConnector):
        def to_task(self, record: Record) -> Task:
            if "title" not in record:
                raise BadRecordError("broken")
            return super().to_task(record)

    suite = contract()
    fails(
        "raised KeyError",
        suite.test_malformed_records_raise_bad_record_error,
        make(toy_api, Crashes),
        [{"title": "no id"}],
    )
    fails(
        "names neither",
        suite.test_malformed_records_raise_bad_record_error,
        make(toy_api, Anonymous),
        [{"id": "1"}],
    )
    fails(
        "was mapped instead of refused",
        suite.test_malformed_records_raise_bad_record_error,
        make(toy_api),
        [{"id": "1", "title": "fine"}],
    )


def test_undocumented_config_is_caught() -> None:
    class Nested(ConnectorConfig):
        depth: int = 1

    class UndocumentedConfig(ConnectorConfig):
        base_url: str = Field(description="documented")
        token: SecretStr
        nested: Nested = Field(default_factory=Nested, description="documented")

    class Undocumented(ToyConnector):
        Config = UndocumentedConfig

    fails(
        "without a description: token, Nested.depth",
        contract(Undocumented).test_config_schema_is_valid_and_documented,
    )


def test_every_connector_package_runs_the_contract_suite() -> None:
    """Each plugins/* package with a connector subclasses ConnectorContract in its tests."""
    import tomllib
    from pathlib import Path

    plugins = Path(__file__).resolve().parent.parent / "plugins"
    missing = []
    for pyproject in sorted(plugins.glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if not project.get("entry-points", {}).get("fragment"):
            continue
        tests = pyproject.parent / "tests"
        if not any("(ConnectorContract)" in p.read_text() for p in tests.rglob("test_*.py")):
            missing.append(pyproject.parent.name)
    assert missing == [], f"packages without a ConnectorContract subclass in tests/: {missing}"


def test_every_built_in_connector_runs_the_contract_suite() -> None:
    """Each connector fragment-core ships (file, http) has a ConnectorContract subclass."""
    from pathlib import Path

    from fragment_core.plugins import get_registry

    tests = Path(__file__).resolve().parent
    text = "\n".join(p.read_text() for p in tests.glob("test_*.py"))
    built_in = [e.cls.__name__ for e in get_registry().all() if e.plugin.builtin]
    assert {"FileConnector", "HttpConnector"} <= set(built_in)
    subclass = r"\(ConnectorContract\):\n(?:.*\n){0,3}\s+connector_class = "
    missing = [name for name in built_in if not re.search(rf"{subclass}{name}\b", text)]
    assert missing == [], f"built-in connectors without a ConnectorContract subclass: {missing}"
