"""``HttpConnector``: any internal REST API, by configuration alone."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from fragment_core.connector import Capability, Completion, Connector, Record
from fragment_core.connectors.http.config import HttpConfig, Incremental
from fragment_core.connectors.http.examples import EXAMPLE_OPTIONS, EXAMPLE_TOML
from fragment_core.connectors.http.paging import paginator_for
from fragment_core.connectors.http.paths import (
    MISSING,
    lookup,
    placeholders,
    quote_segment,
    render,
    set_path,
)
from fragment_core.connectors.http.session import HttpSession
from fragment_core.errors import (
    BadRecordError,
    ConfigurationError,
    TransientError,
    WriteBackError,
)
from fragment_core.paging import MaxPagesError, PageRequest, PagingLoopError, paginate_http
from fragment_core.task import RemoteTask, Task, format_datetime

__all__ = ["HttpConnector"]

_DATETIME = TypeAdapter(datetime)


class HttpConnector(Connector[HttpConfig]):
    """Any internal REST API (a back-office's open backlog), configured in fragment.toml.

    Auth (bearer, basic, API key), paging (page, offset, cursor, Link header, next URL),
    the mapping to tasks, incremental fetches and the write-back are all options; run
    ``fragment connectors show http`` for an annotated example.
    """

    name: ClassVar[str] = "http"
    example_options: ClassVar[dict[str, Any]] = EXAMPLE_OPTIONS
    example_toml = EXAMPLE_TOML

    def __init__(self, config: HttpConfig | Mapping[str, Any], *, source: str = "") -> None:
        if not isinstance(config, HttpConfig):
            from fragment_core.connectors.http.config import parse_options

            config = parse_options(config)
        super().__init__(config, source=source)

    def build_client(self) -> HttpSession:
        """The HTTP layer (``self.client``, built on first use)."""
        return HttpSession(self.config, source=self.source)

    @property
    def session(self) -> HttpSession:
        """The HTTP layer (the same object as :attr:`client`)."""
        return self.client

    @property
    def where(self) -> str:
        """How errors name this source (``source 'name'``)."""
        return f"source {self.source!r}"

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._client.requests_made if self._client else 0

    def configured_capabilities(self) -> frozenset[Capability]:
        """Only what the options configure: ``incremental`` and ``write_back`` are opt-in."""
        configured = set(super().configured_capabilities())
        if self.config.incremental is None:
            configured.discard(Capability.INCREMENTAL)
        if self.config.write_back is None:
            configured.discard(Capability.WRITE_BACK)
        return frozenset(configured)

    # -- fetching ---------------------------------------------------------------------
    def fetch_backlog(self) -> Iterator[Record]:
        """Every open record: the backlog request, page after page."""
        yield from self._fetch(self._backlog_request(), key="options.backlog.path")

    def _backlog_request(self) -> PageRequest:
        """The backlog request as configured (before pagination)."""
        backlog = self.config.backlog
        return PageRequest(
            method=backlog.method,
            url=backlog.path,
            params=dict(backlog.params),
            body=copy.deepcopy(backlog.body),
            headers=dict(backlog.headers),
        )

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Records changed since ``cursor`` (sent as the ``incremental.param``).

        Without ``incremental`` options, the whole backlog (a superset of the changes).
        """
        incremental = self.config.incremental
        if incremental is None:
            yield from self.fetch_backlog()
            return
        request = self._backlog_request()
        params = request.params if incremental.params is None else dict(incremental.params)
        body = request.body
        if cursor is not None:
            if incremental.location == "query":
                params[incremental.param] = cursor
            else:
                body = body or {}
                set_path(body, incremental.param, cursor)
        request = replace(request, url=incremental.path or request.url, params=params, body=body)
        yield from self._fetch(request, key="options.incremental.path")

    def _fetch(self, request: PageRequest, *, key: str) -> Iterator[Record]:
        pagination = self.config.pagination
        where = self.where

        def send(current: PageRequest) -> tuple[Any, Any]:
            return self.session.request(
                current.method,
                current.url,
                key=key,
                params=current.params,
                body=current.body,
                headers=current.headers,
            )

        records = paginate_http(
            send,
            request,
            paginator_for(pagination),
            self._records,
            id_of=self.record_id,
            max_pages=pagination.max_pages,
            what=f"the listing {request.method} {request.url}",
        )
        try:
            yield from records
        except MaxPagesError:
            raise ConfigurationError(
                f"options.pagination.max_pages: stopped after {pagination.max_pages} "
                "pages; raise it if the backlog really is that large",
                where=where,
            ) from None
        except PagingLoopError as exc:
            raise ConfigurationError(
                f"options.pagination: page {exc.page} repeats an earlier request "
                f"({request.method} {request.url}); the API does not advance with "
                f"pagination type {pagination.type!r}",
                where=where,
            ) from None
        except (ConfigurationError, TransientError) as exc:
            exc.attribute(where)
            raise

    def _records(self, payload: Any, request: PageRequest) -> list[Any]:
        path = self.config.backlog.records_path
        records = lookup(payload, path)
        if records is None:
            return []
        if isinstance(records, list):
            return records
        found = (
            f"keys {sorted(payload)[:10]}"
            if isinstance(payload, Mapping)
            else type(payload).__name__
        )
        got = "nothing" if records is MISSING else f"a {type(records).__name__}"
        raise ConfigurationError(
            f"options.backlog.records_path: expected a list of records at {path or '(body)'!r} "
            f"in the response to {request.method} {request.url} (page {request.number}), "
            f"found {got}; the response has {found}",
            where=self.where,
        )

    # -- mapping ----------------------------------------------------------------------
    def record_id(self, record: Record) -> str | None:
        """The value at ``mapping.external_id``."""
        if not isinstance(record, Mapping):
            return None
        value = lookup(record, self.config.mapping.external_id)
        if value is MISSING or value is None or value == "" or isinstance(value, (dict, list)):
            return None
        return str(value)

    def cursor_value(self, record: Record) -> str | None:
        """The value at ``incremental.cursor_field``."""
        incremental = self.config.incremental
        if incremental is None or not isinstance(record, Mapping):
            return None
        value = lookup(record, incremental.cursor_field)
        return None if value is MISSING or value is None else str(value)

    def is_open(self, record: Record) -> bool:
        """Whether ``incremental.open_field`` has one of ``incremental.open_values``."""
        incremental: Incremental | None = self.config.incremental
        if incremental is None or incremental.open_field is None:
            return True
        value = lookup(record, incremental.open_field)
        return any(_same(value, open_value) for open_value in incremental.open_values)

    def to_task(self, record: Record) -> Task:
        """Map a record with the ``mapping`` options; BadRecordError names the field."""
        mapping = self.config.mapping
        where = f"source {self.source!r}"
        if not isinstance(record, Mapping):
            raise BadRecordError(
                f"a record must be a JSON object, got {type(record).__name__}", where=where
            )
        record_id = self.record_id(record)

        def bad(message: str, field: str) -> BadRecordError:
            return BadRecordError(message, record_id=record_id, field=field, where=where)

        if record_id is None:
            raw = lookup(record, mapping.external_id)
            problem = "is missing" if raw is MISSING or raw in (None, "") else "is not a scalar"
            raise bad(f"the id {problem} (options.mapping.external_id)", mapping.external_id)

        def resolve(path: str) -> Any:
            value = lookup(record, path)
            if value is MISSING or value is None:
                raise bad("is missing (used in a template of options.mapping)", path)
            if isinstance(value, (dict, list)):
                raise bad("is an object or list, not a value for a template", path)
            return value

        title = self._title(record, resolve, bad)
        url = render(mapping.url, resolve, quote=_quote) if mapping.url else None
        custom: dict[str, Any] = dict(mapping.defaults)
        for name, path in mapping.custom.items():
            value = lookup(record, path)
            if value is not MISSING and value is not None:
                custom[name] = value
        try:
            return Task.new(
                external_id=record_id,
                title=title,
                url=url,
                due_at=self._datetime(record, mapping.due_at, bad),
                custom=custom,
                external_created_at=self._datetime(record, mapping.created_at, bad),
                external_updated_at=self._datetime(record, mapping.updated_at, bad),
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"] if p != "fields")
            raise bad(first["msg"], field) from None

    def _title(
        self,
        record: Record,
        resolve: Callable[[str], Any],
        bad: Callable[[str, str], BadRecordError],
    ) -> str:
        """The title at ``mapping.title``, or ``mapping.title_template`` rendered."""
        mapping = self.config.mapping
        if mapping.title is None:
            return render(mapping.title_template or "", resolve)
        title = lookup(record, mapping.title)
        if title is MISSING or title is None or str(title).strip() == "":
            raise bad("the title is missing or empty (options.mapping.title)", mapping.title)
        if isinstance(title, (dict, list)):
            raise bad("the title is an object or list, not text", mapping.title)
        return str(title)

    @staticmethod
    def _datetime(record: Record, path: str | None, bad: Any) -> datetime | None:
        if path is None:
            return None
        value = lookup(record, path)
        if value is MISSING or value is None or value == "":
            return None
        try:
            parsed = _DATETIME.validate_python(value)
        except ValidationError:
            raise bad(
                f"{value!r} is not a date-time (ISO 8601 like 2025-01-31T17:00:00Z, or "
                "unix seconds)",
                path,
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    # -- write-back -------------------------------------------------------------------
    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Send the ``write_back`` request, e.g. ``PATCH /tickets/{external_id}``."""
        write_back = self.config.write_back
        if write_back is None:
            return "no write-back configured (options.write_back); nothing sent"
        context = {
            "external_id": completion.external_id,
            "id": completion.external_id,
            "uid": str(completion.uid),
            "source": completion.source,
            "done_at": format_datetime(completion.done_at or datetime.now(UTC)),
            "idempotency_key": completion.idempotency_key,
            "outcome": dict(completion.outcome),
            "fields": dict(task.fields),
        }

        def resolver(key: str) -> Any:
            def resolve(path: str) -> Any:
                value = lookup(context, path)
                if value is MISSING or value is None:
                    raise WriteBackError(
                        f"{key}: placeholder {{{path}}} has no value for task "
                        f"{completion.external_id!r}; available: "
                        "external_id, uid, source, done_at, idempotency_key, outcome.KEY, "
                        "fields.KEY",
                        where=f"source {self.source!r}",
                    )
                return value

            return resolve

        path = render(write_back.path, resolver("options.write_back.path"), quote=_quote)
        body = (
            _render_json(write_back.body, resolver("options.write_back.body"))
            if write_back.body is not None
            else None
        )
        headers = {
            name: render(value, resolver(f"options.write_back.headers.{name}"))
            for name, value in write_back.headers.items()
        }
        if write_back.idempotency_header and completion.idempotency_key:
            headers.setdefault(write_back.idempotency_header, completion.idempotency_key)
        try:
            response, _ = self.session.request(
                write_back.method,
                path,
                key="options.write_back.path",
                body=body,
                headers=headers,
                accept=frozenset(write_back.accept_statuses),
                decode=False,
            )
        except ConfigurationError as exc:
            raise WriteBackError(exc.message, where=exc.where) from None
        return f"{write_back.method} {path} -> HTTP {response.status_code}"

    # -- check ------------------------------------------------------------------------
    def check(self) -> str:
        """One cheap request: ``check_path``, or the first page of the backlog."""
        config = self.config
        if config.check_path:
            method, url, key = "GET", config.check_path, "options.check_path"
            request = PageRequest(method=method, url=url)
        else:
            key = "options.backlog.path"
            request = paginator_for(config.pagination).first(self._backlog_request())
        response, payload = self.session.request(
            request.method,
            request.url,
            key=key,
            params=request.params,
            body=request.body,
            headers=request.headers,
            unreachable_is_config=True,
        )
        summary = f"{request.method} {config.base_url}{request.url}: HTTP {response.status_code}"
        if config.check_path:
            return summary
        records = self._records(payload, request)
        return f"{summary}, {len(records)} records on the first page"


def _same(value: Any, expected: Any) -> bool:
    return value == expected or str(value) == str(expected)


def _quote(text: str) -> str:
    """Percent-encode a value placed in a URL or path template (``/`` and ``.`` included)."""
    return quote_segment(text)


def _render_json(template: Any, resolve: Any) -> Any:
    """Fill every string of a JSON template; ``"{x}"`` alone keeps x's JSON type."""
    if isinstance(template, str):
        names = placeholders(template)
        if len(names) == 1 and template == "{" + names[0] + "}":
            return resolve(names[0])
        return render(template, resolve)
    if isinstance(template, dict):
        return {key: _render_json(value, resolve) for key, value in template.items()}
    if isinstance(template, list):
        return [_render_json(value, resolve) for value in template]
    return template
