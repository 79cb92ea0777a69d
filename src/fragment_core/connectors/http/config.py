"""Options of the ``http`` connector: a pydantic model per part of ``[sources.options]``.

Validation errors name the option (``pagination.cursor_path``) and show a valid TOML
example of the part that is wrong; :func:`parse_options` turns them into one
:class:`~fragment_core.errors.ConfigurationError`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fragment_core.connector import BaseUrl, ConnectorConfig
from fragment_core.connectors.http.paths import placeholders
from fragment_core.errors import ConfigurationError
from fragment_core.validation import explained_error, loc_text

__all__ = [
    "ApiKeyAuth",
    "BacklogRequest",
    "BasicAuth",
    "BearerAuth",
    "CursorPagination",
    "HttpConfig",
    "Incremental",
    "LinkHeaderPagination",
    "NextUrlPagination",
    "NoAuth",
    "NoPagination",
    "OffsetPagination",
    "PagePagination",
    "TaskMapping",
    "WriteBack",
    "parse_options",
]

Scalar = str | int | float | bool
_RESERVED_FIELDS = {"title", "url", "external_id", "sync_source"}


class _Options(BaseModel):
    """Base of every options part: unknown keys are an error; ``example`` is TOML."""

    model_config = ConfigDict(extra="forbid")
    example: ClassVar[str] = ""


def _check_template(value: str | None, *, url_path: bool = False) -> str | None:
    if value is None:
        return value
    try:
        placeholders(value)
    except ValueError as exc:
        raise ValueError(f"invalid template {value!r}: {exc}") from None
    if url_path and not value.startswith("/") and "://" not in value:
        raise ValueError(f"{value!r} must start with '/' (a path under base_url)")
    return value


# -- auth -------------------------------------------------------------------------------
class NoAuth(_Options):
    """No credentials (an API on a private network)."""

    type: Literal["none"] = Field(description="No authentication.")
    example: ClassVar[str] = '{type = "none"}'


class BearerAuth(_Options):
    """``Authorization: Bearer <token>``."""

    type: Literal["bearer"] = Field(description="Bearer token in the Authorization header.")
    token: SecretStr = Field(description='The token; use "${ENV_VAR}" in fragment.toml.')
    example: ClassVar[str] = '{type = "bearer", token = "${BACKOFFICE_TOKEN}"}'


class BasicAuth(_Options):
    """HTTP basic authentication."""

    type: Literal["basic"] = Field(description="HTTP basic authentication.")
    username: str = Field(description="The user name.")
    password: SecretStr = Field(description='The password; use "${ENV_VAR}" in fragment.toml.')
    example: ClassVar[str] = (
        '{type = "basic", username = "fragment-sync", password = "${BACKOFFICE_PASSWORD}"}'
    )


class ApiKeyAuth(_Options):
    """An API key in a header (default ``X-API-Key``) or a query parameter."""

    type: Literal["api_key"] = Field(description="An API key in a header or query parameter.")
    key: SecretStr = Field(description='The API key; use "${ENV_VAR}" in fragment.toml.')
    location: Literal["header", "query"] = Field(
        default="header", description="Send the key in a request header or a query parameter."
    )
    name: str = Field(
        default="X-API-Key",
        min_length=1,
        description="Header name (location header) or query parameter name (location query).",
    )
    example: ClassVar[str] = (
        '{type = "api_key", key = "${BACKOFFICE_KEY}", location = "header", name = "X-API-Key"}'
    )


Auth = Annotated[
    Union[NoAuth, BearerAuth, BasicAuth, ApiKeyAuth],  # noqa: UP007
    Field(discriminator="type"),
]


# -- pagination -------------------------------------------------------------------------
class _Pagination(_Options):
    max_pages: int = Field(
        default=10_000,
        ge=1,
        description="Stop with an error after this many pages (guards against loops).",
    )


class NoPagination(_Pagination):
    """One request returns the whole backlog."""

    type: Literal["none"] = Field(description="No pagination: one request.")
    example: ClassVar[str] = '{type = "none"}'


class PagePagination(_Pagination):
    """``?page=1``, ``?page=2``... until a short or empty page (or the total page count)."""

    type: Literal["page"] = Field(description="Page-number pagination.")
    param: str = Field(default="page", min_length=1, description="Query parameter of the page.")
    start: int = Field(default=1, ge=0, description="Number of the first page.")
    size_param: str | None = Field(
        default=None, description='Query parameter of the page size (e.g. "per_page").'
    )
    size: int | None = Field(
        default=None, ge=1, description="Page size to ask for; a shorter page is the last."
    )
    total_pages_path: str | None = Field(
        default=None, description='Path of the total page count in the response ("meta.pages").'
    )
    example: ClassVar[str] = '{type = "page", param = "page", size_param = "per_page", size = 100}'

    @model_validator(mode="after")
    def _size_with_param(self) -> PagePagination:
        if self.size_param is not None and self.size is None:
            raise ValueError("size_param is set but size is not; set both, e.g. size = 100")
        return self


class OffsetPagination(_Pagination):
    """``?offset=0&limit=100``, ``?offset=100&limit=100``... until a short page."""

    type: Literal["offset"] = Field(description="Offset/limit pagination.")
    param: str = Field(default="offset", min_length=1, description="Query parameter of the offset.")
    limit_param: str = Field(
        default="limit", min_length=1, description="Query parameter of the page size."
    )
    limit: int = Field(default=100, ge=1, description="Page size; a shorter page is the last.")
    start: int = Field(default=0, ge=0, description="Offset of the first record.")
    total_path: str | None = Field(
        default=None, description='Path of the total record count in the response ("total").'
    )
    example: ClassVar[str] = (
        '{type = "offset", param = "offset", limit_param = "limit", limit = 100}'
    )


class CursorPagination(_Pagination):
    """The response body holds the next cursor; send it back until there is none."""

    type: Literal["cursor"] = Field(description="Cursor in the response body.")
    cursor_path: str = Field(
        min_length=1, description='Path of the next cursor in the response ("meta.next").'
    )
    param: str = Field(
        default="cursor",
        min_length=1,
        description="Query parameter (or body key, dotted, for location body) of the cursor.",
    )
    location: Literal["query", "body"] = Field(
        default="query", description="Send the cursor as a query parameter or in the JSON body."
    )
    example: ClassVar[str] = '{type = "cursor", cursor_path = "meta.next", param = "cursor"}'


class LinkHeaderPagination(_Pagination):
    """Follow the ``Link: <...>; rel="next"`` response header (RFC 8288)."""

    type: Literal["link_header"] = Field(description="Link header pagination.")
    rel: str = Field(default="next", min_length=1, description="The link relation to follow.")
    example: ClassVar[str] = '{type = "link_header", rel = "next"}'


class NextUrlPagination(_Pagination):
    """The response body holds the URL of the next page."""

    type: Literal["next_url"] = Field(description="Next-page URL in the response body.")
    next_url_path: str = Field(
        min_length=1, description='Path of the next page URL in the response ("links.next").'
    )
    example: ClassVar[str] = '{type = "next_url", next_url_path = "links.next"}'


Pagination = Annotated[
    Union[  # noqa: UP007
        NoPagination,
        PagePagination,
        OffsetPagination,
        CursorPagination,
        LinkHeaderPagination,
        NextUrlPagination,
    ],
    Field(discriminator="type"),
]


# -- requests and mapping ---------------------------------------------------------------
class BacklogRequest(_Options):
    """The request that lists the open backlog (its first page)."""

    method: Literal["GET", "POST"] = Field(default="GET", description="HTTP method.")
    path: str = Field(description='Path under base_url, e.g. "/api/tickets".')
    params: dict[str, Scalar] = Field(
        default_factory=dict, description='Query parameters, e.g. {status = "open"}.'
    )
    body: dict[str, Any] | None = Field(default=None, description="JSON body (for POST searches).")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (not for secrets: use auth)."
    )
    records_path: str = Field(
        default="",
        description='Path of the record list in the response ("data.items"); "" = the body.',
    )
    example: ClassVar[str] = (
        '{method = "GET", path = "/api/tickets", params = {status = "open"}, '
        'records_path = "data.items"}'
    )

    _path = field_validator("path")(classmethod(lambda cls, v: _check_template(v, url_path=True)))


class TaskMapping(_Options):
    """How a record becomes a task: paths into the record and ``{path}`` templates."""

    external_id: str = Field(
        default="id", min_length=1, description="Path of the record's id (required in records)."
    )
    title: str | None = Field(
        default=None, description='Path of the title ("subject"); or use title_template.'
    )
    title_template: str | None = Field(
        default=None, description='Title template, e.g. "{subject} ({customer.name})".'
    )
    url: str | None = Field(
        default=None,
        description='Link template for operators, e.g. "https://backoffice/tickets/{id}".',
    )
    due_at: str | None = Field(
        default=None, description="Path of the due date (ISO 8601 or unix seconds)."
    )
    created_at: str | None = Field(
        default=None, description="Path of the record's creation time (external_created_at)."
    )
    updated_at: str | None = Field(
        default=None, description="Path of the record's last change (external_updated_at)."
    )
    custom: dict[str, str] = Field(
        default_factory=dict,
        description='Custom task fields: field name -> record path, e.g. {amount = "amount"}.',
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Custom fields set on every task; also the value of a mapped custom "
        "field whose path is missing in a record.",
    )
    example: ClassVar[str] = (
        '{external_id = "id", title = "subject", url = "https://backoffice/tickets/{id}", '
        'due_at = "due_date", custom = {customer = "customer.name"}, defaults = {team = "ops"}}'
    )

    _templates = field_validator("title_template", "url")(
        classmethod(lambda cls, v: _check_template(v))
    )

    @model_validator(mode="after")
    def _one_title(self) -> TaskMapping:
        if (self.title is None) == (self.title_template is None):
            raise ValueError(
                'set exactly one of title (a path, e.g. "subject") or title_template '
                '(e.g. "{subject} #{id}")'
            )
        reserved = _RESERVED_FIELDS & (set(self.custom) | set(self.defaults))
        if reserved:
            raise ValueError(
                f"custom/defaults cannot set {sorted(reserved)}: those are mapped by "
                "external_id, title and url"
            )
        return self


class Incremental(_Options):
    """Fetch only records changed since a cursor (an updated-since parameter)."""

    cursor_field: str = Field(
        min_length=1, description='Path of the record\'s change time ("updated_at").'
    )
    param: str = Field(
        default="updated_since",
        min_length=1,
        description="Query parameter (or body key, for location body) given the cursor.",
    )
    location: Literal["query", "body"] = Field(
        default="query", description="Send the cursor as a query parameter or in the JSON body."
    )
    path: str | None = Field(
        default=None, description="Path for change requests; default: backlog.path."
    )
    params: dict[str, Scalar] | None = Field(
        default=None,
        description="Query parameters for change requests (replace backlog.params), e.g. "
        "{} to see closed records too.",
    )
    open_field: str | None = Field(
        default=None, description='Path telling whether a changed record is open ("status").'
    )
    open_values: list[Scalar] = Field(
        default_factory=list, description='Values of open_field meaning open, e.g. ["open"].'
    )
    example: ClassVar[str] = (
        '{cursor_field = "updated_at", param = "updated_since", params = {}, '
        'open_field = "status", open_values = ["open"]}'
    )

    _path = field_validator("path")(classmethod(lambda cls, v: _check_template(v, url_path=True)))

    @model_validator(mode="after")
    def _open_pair(self) -> Incremental:
        if (self.open_field is None) != (not self.open_values):
            raise ValueError(
                "set open_field and open_values together, e.g. open_field = "
                '"status", open_values = ["open"]'
            )
        return self


class WriteBack(_Options):
    """The request that records a completion in the source, e.g. ``PATCH /tickets/{id}``.

    Templates may use ``{external_id}`` (also ``{id}``), ``{uid}``, ``{source}``,
    ``{done_at}``, ``{idempotency_key}``, ``{outcome.KEY}`` and ``{fields.KEY}``. A body
    string that is exactly one placeholder keeps the value's JSON type.
    """

    method: Literal["POST", "PUT", "PATCH", "DELETE"] = Field(
        default="PATCH", description="HTTP method."
    )
    path: str = Field(
        description='Path template, e.g. "/api/tickets/{external_id}"; each value is '
        "percent-encoded whole (/, ?, #, % and . too), so no id can change the path."
    )
    body: dict[str, Any] | None = Field(
        default=None, description='JSON body template, e.g. {status = "closed"}.'
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Header templates.")
    idempotency_header: str | None = Field(
        default="Idempotency-Key",
        description='Header carrying the completion\'s idempotency key; "" to send none.',
    )
    accept_statuses: list[int] = Field(
        default_factory=list,
        description="Error statuses that mean it is already done (e.g. [409]).",
    )
    example: ClassVar[str] = (
        '{method = "PATCH", path = "/api/tickets/{external_id}", body = {status = "closed"}}'
    )

    _path = field_validator("path")(classmethod(lambda cls, v: _check_template(v, url_path=True)))


# -- the whole options block ------------------------------------------------------------
class HttpConfig(ConnectorConfig):
    """``[sources.options]`` of the ``http`` connector."""

    base_url: BaseUrl = Field(
        description="Root of the API; paths are appended to it.",
        examples=["https://backoffice.example.com"],
    )
    auth: Auth = Field(default_factory=lambda: NoAuth(type="none"), description="Credentials.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every request (not for secrets)."
    )
    backlog: BacklogRequest = Field(description="The request listing the open backlog.")
    pagination: Pagination = Field(
        default_factory=lambda: NoPagination(type="none"), description="How pages follow."
    )
    mapping: TaskMapping = Field(description="How a record becomes a task.")
    incremental: Incremental | None = Field(
        default=None, description="Fetch changes since a cursor between full fetches."
    )
    write_back: WriteBack | None = Field(
        default=None, description="Request sent when an operator completes a task."
    )
    check_path: str | None = Field(
        default=None,
        description="Cheap GET for `fragment check`; default: the backlog's first page.",
        examples=["/api/health"],
    )
    rate_limit: int | None = Field(
        default=None,
        ge=1,
        description="Requests per minute to this API; unset = no limit.",
        examples=[120],
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per request.", examples=[30])
    example: ClassVar[str] = (
        'base_url = "https://backoffice.example.com", backlog = {path = "/api/tickets"}, '
        'mapping = {external_id = "id", title = "subject"}'
    )

    _check = field_validator("check_path")(
        classmethod(lambda cls, v: _check_template(v, url_path=True))
    )

    @model_validator(mode="wrap")
    @classmethod
    def _explain_errors(cls, data: Any, handler: Any) -> HttpConfig:
        try:
            return handler(data)
        except ValidationError as exc:
            raise explained_error(exc, HttpConfig, noun="option") from None


def parse_options(options: Any, *, where: str = "options") -> HttpConfig:
    """Validate a ``[sources.options]`` table, raising one :class:`ConfigurationError`.

    Each problem is a line ``options.KEY: what is wrong; example: a valid value``.
    """
    try:
        return HttpConfig.model_validate(options)
    except ValidationError as exc:
        lines = [f"{loc_text(e['loc'], where)}: {e['msg']}" for e in exc.errors()]
        raise ConfigurationError(
            "invalid options of the http connector:\n  " + "\n  ".join(lines)
        ) from None
