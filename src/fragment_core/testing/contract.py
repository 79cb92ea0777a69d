"""The connector contract suite: subclass :class:`ConnectorContract` to test a connector.

::

    class TestTicketsContract(ConnectorContract):
        connector_class = TicketsConnector

        @pytest.fixture
        def connector(self, tickets_api): ...         # configured against a running fake

        @pytest.fixture
        def bad_connector(self, tickets_api): ...     # same, with credentials it rejects

        @pytest.fixture
        def backlog_size(self) -> int: ...            # open records served (> one page)

        @pytest.fixture
        def malformed_records(self) -> list[Record]: ...  # each must raise BadRecordError

        @pytest.fixture
        def secrets(self) -> list[str]: ...           # secret values used ([] if it has none)

        @pytest.fixture
        def effect_count(self, tickets_api): ...      # external_id -> write-back effects seen

Every ``test_*`` method below then runs against the connector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from fragment_core.connector import Capability, Completion, Connector, Record
from fragment_core.errors import AuthenticationError, BadRecordError, ConfigurationError
from fragment_core.task import SOURCE_FIELD, RemoteTask, Task, TaskStatus, task_uid

__all__ = ["ConnectorContract", "completion_for", "secret_fields", "undocumented_fields"]


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(dotted name, property)`` for the properties of a JSON Schema and of its ``$defs``."""
    nodes = [("", schema)] + [
        (f"{name}.", definition) for name, definition in (schema.get("$defs") or {}).items()
    ]
    for prefix, node in nodes:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                yield f"{prefix}{name}", prop


def undocumented_fields(schema: dict[str, Any]) -> list[str]:
    """Dotted names of the properties of a JSON Schema (and its ``$defs``) lacking a description."""
    return [
        name
        for name, prop in _properties(schema)
        if not isinstance(prop, dict) or not str(prop.get("description", "")).strip()
    ]


def secret_fields(schema: dict[str, Any]) -> list[str]:
    """Dotted names of the secret (``SecretStr``) properties of a JSON Schema and its ``$defs``."""
    return [
        name
        for name, prop in _properties(schema)
        if isinstance(prop, dict)
        and any(
            isinstance(v, dict) and v.get("format") == "password"
            for v in [prop, *(prop.get("anyOf") or [])]
        )
    ]


def completion_for(connector: Connector[Any], task: Task) -> tuple[RemoteTask, Completion]:
    """The remote task and completion the runner passes to ``on_complete`` for ``task``."""
    source_task = task.for_source(connector.source)
    assert source_task.uid is not None
    done_at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    fields = source_task.to_api()["fields"]
    fields.setdefault(SOURCE_FIELD, connector.source)
    remote = RemoteTask(uid=source_task.uid, status=TaskStatus.DONE, fields=fields, done_at=done_at)
    completion = Completion(
        source=connector.source,
        external_id=task.external_id,
        uid=source_task.uid,
        done_at=done_at,
        idempotency_key=f"{source_task.uid}:{done_at.isoformat()}",
    )
    return remote, completion


def _fixture_missing(name: str, what: str) -> BaseException:
    return pytest.fail.Exception(
        f"ConnectorContract: define the `{name}` fixture in your subclass ({what})"
    )


class ConnectorContract:
    """Tests every connector must pass. Subclass it as ``TestXContract`` and give fixtures.

    The fixtures below fail with an explanation until the subclass overrides them.
    """

    #: The connector class under test.
    connector_class: ClassVar[type[Connector[Any]]]

    # -- fixtures a subclass provides ------------------------------------------------------
    @pytest.fixture
    def connector(self) -> Connector[Any]:
        """A connector configured against a running fake API, ready to fetch."""
        raise _fixture_missing("connector", "a connector configured against a running fake")

    @pytest.fixture
    def bad_connector(self) -> Connector[Any]:
        """The same connector with credentials the fake rejects."""
        raise _fixture_missing("bad_connector", "credentials the fake rejects")

    @pytest.fixture
    def backlog_size(self) -> int:
        """How many open records the fake serves (more than one page)."""
        raise _fixture_missing("backlog_size", "how many open records the fake serves")

    @pytest.fixture
    def malformed_records(self) -> list[Record]:
        """Records that ``to_task`` must refuse with ``BadRecordError``."""
        raise _fixture_missing("malformed_records", "records to_task must refuse")

    @pytest.fixture
    def secrets(self) -> list[str]:
        """The secret values (tokens, keys) used in the connectors' configuration."""
        raise _fixture_missing("secrets", "the secret values used in the configs")

    @pytest.fixture
    def effect_count(self) -> Callable[[str], int]:
        """``external_id -> number of write-back effects the fake observed``."""
        raise _fixture_missing("effect_count", "write-back effects the fake observed")

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _fetch(connector: Connector[Any]) -> list[Record]:
        return list(connector.fetch_backlog())

    @staticmethod
    def _assert_no_secret(texts: Iterable[tuple[str, str]], secrets: list[str]) -> None:
        for where, text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret value appears in {where}"

    # -- the contract ----------------------------------------------------------------------
    def test_config_schema_is_valid_and_documented(self) -> None:
        """The Config model gives a valid JSON Schema whose every option has a description."""
        import jsonschema

        cls = self.connector_class
        assert cls.name, f"{cls.__name__}.name is empty: set the type key used in config"
        schema = cls.Config.model_json_schema()
        jsonschema.validators.validator_for(schema).check_schema(schema)
        missing = undocumented_fields(schema)
        assert not missing, (
            f"{cls.__name__}.Config options without a description: {', '.join(missing)} "
            "(use Field(description=...))"
        )

    def test_check_succeeds(self, connector: Connector[Any]) -> None:
        """``check()`` on a good configuration returns a one-line summary."""
        summary = connector.check()
        assert isinstance(summary, str) and summary.strip(), "check() must return a summary"

    def test_check_rejects_bad_credentials(
        self, bad_connector: Connector[Any], secrets: list[str]
    ) -> None:
        """``check()`` with rejected credentials raises an error a person can act on."""
        with pytest.raises((AuthenticationError, ConfigurationError)) as info:
            bad_connector.check()
        text = str(info.value)
        assert info.value.message.strip(), "the error message is empty"
        names = {bad_connector.name.lower(), bad_connector.source.lower()} - {""}
        assert any(name in text.lower() for name in names), (
            f"the error {text!r} does not name the connector or source ({', '.join(names)}); "
            "pass where=... to the error"
        )
        assert "Traceback" not in text, "the error message carries a traceback"
        self._assert_no_secret([("the check() error", text)], secrets)

    def test_to_task_gives_valid_tasks(self, connector: Connector[Any]) -> None:
        """Every backlog record maps to a Task with external_id, title and an http(s) url."""
        records = self._fetch(connector)
        assert records, "fetch_backlog() yielded nothing: the fake should serve a backlog"
        for record in records:
            task = connector.to_task(record)
            assert isinstance(task, Task), f"to_task returned {type(task).__name__}, not Task"
            where = f"task {task.external_id!r}"
            assert task.external_id.strip(), f"{where}: empty external_id"
            assert task.fields.title.strip(), f"{where}: empty title"
            assert task.fields.url and task.fields.url.startswith(("http://", "https://")), (
                f"{where}: url {task.fields.url!r} is not an http(s) link"
            )
            record_id = connector.record_id(record)
            if record_id is not None:
                assert record_id == task.external_id, (
                    f"{where}: record_id() says {record_id!r}; set id_field or override "
                    "record_id() so bad records are named and counted as seen"
                )
            task.to_api()  # every value can be sent

    def test_uids_and_hashes_stable_across_runs(self, connector: Connector[Any]) -> None:
        """Two fetches of an unchanged backlog give the same uids and the same content."""

        def snapshot() -> dict[str, str]:
            tasks = [connector.to_task(r) for r in self._fetch(connector)]
            return {str(task_uid(connector.source, t.external_id)): t.content_hash() for t in tasks}

        first, second = snapshot(), snapshot()
        assert set(first) == set(second), "the uids changed between two fetches"
        changed = [uid for uid in first if first[uid] != second[uid]]
        assert not changed, f"{len(changed)} tasks changed content between two identical fetches"

    def test_fetch_backlog_pages_to_the_end(
        self, connector: Connector[Any], backlog_size: int
    ) -> None:
        """``fetch_backlog`` follows every page: all records, each once."""
        ids = [connector.to_task(r).external_id for r in self._fetch(connector)]
        assert len(ids) == backlog_size, (
            f"fetch_backlog() yielded {len(ids)} records, the fake serves {backlog_size}"
        )
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        assert not duplicates, f"records yielded more than once: {duplicates[:10]}"

    def test_on_complete_is_idempotent(
        self, connector: Connector[Any], effect_count: Callable[[str], int]
    ) -> None:
        """``on_complete`` called twice for one completion has one effect."""
        if Capability.WRITE_BACK not in type(connector).capabilities():
            pytest.skip(f"{type(connector).__name__} has no write-back (on_complete)")
        task = connector.to_task(self._fetch(connector)[0])
        remote, completion = completion_for(connector, task)
        before = effect_count(task.external_id)
        connector.on_complete(remote, completion)
        connector.on_complete(remote, completion)
        effects = effect_count(task.external_id) - before
        assert effects == 1, (
            f"on_complete twice for {task.external_id!r} had {effects} effects, expected 1"
        )

    def test_secrets_absent_from_reprs_errors_and_logs(
        self,
        connector: Connector[Any],
        bad_connector: Connector[Any],
        secrets: list[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """No secret in reprs, config dumps, error messages, or logs of check and fetch.

        A connector whose Config has no secret option (no ``SecretStr``) may list none.
        """
        secret_options = secret_fields(self.connector_class.Config.model_json_schema())
        if not secrets:
            assert not secret_options, (
                f"the `secrets` fixture lists no secret, but the Config has secret options: "
                f"{', '.join(secret_options)}; list the values used for them"
            )
        assert all(secrets), "the `secrets` fixture lists an empty value"
        caplog.set_level(logging.DEBUG)
        connector.check()
        records = self._fetch(connector)
        texts = [
            ("repr(connector)", repr(connector)),
            ("repr(connector.config)", repr(connector.config)),
            ("str(connector.config)", str(connector.config)),
            ("connector.config.model_dump_json()", connector.config.model_dump_json()),
            ("repr(bad_connector)", repr(bad_connector)),
        ]
        for record in records[:3]:
            texts.append(("repr(task)", repr(connector.to_task(record))))
        try:
            bad_connector.check()
        except Exception as exc:
            texts.append((f"the {type(exc).__name__} of check()", str(exc)))
            texts.append(("repr of the check() error", repr(exc)))
        texts.append(("the logs", caplog.text))
        self._assert_no_secret(texts, secrets)

    def test_malformed_records_raise_bad_record_error(
        self, connector: Connector[Any], malformed_records: list[Record]
    ) -> None:
        """``to_task`` refuses each malformed record with BadRecordError naming it."""
        assert malformed_records, "the `malformed_records` fixture lists no record"
        for index, record in enumerate(malformed_records):
            try:
                connector.to_task(record)
            except BadRecordError as exc:
                assert exc.record_id is not None or exc.field is not None, (
                    f"malformed record #{index}: BadRecordError({exc}) names neither the "
                    "record nor the field"
                )
            except Exception as exc:
                pytest.fail(
                    f"malformed record #{index}: to_task raised {type(exc).__name__}({exc}) "
                    "instead of BadRecordError"
                )
            else:
                pytest.fail(f"malformed record #{index} was mapped instead of refused: {record}")
