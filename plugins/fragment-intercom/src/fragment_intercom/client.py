"""The Intercom calls the connector makes, through the official SDK on our Transport.

The SDK (python-intercom 5.x, httpx-based) is given the Transport's ``httpx_client`` and
its base URL through its own ``base_url`` setting, so every SDK request goes through our
origin guard, auth and ``X-RateLimit`` watcher. The token lives only in our
:class:`~fragment_core.transport.BearerAuth` (the SDK holds a placeholder it cannot leak).

One retry loop: the SDK's own retries are switched off on every call
(``max_retries: 0``) and each call runs under :meth:`Transport.call`, whose stamina loop
retries our transient classes (5xx, timeouts, a cut-short answer) and waits out a 429 until
its ``X-RateLimit-Reset``. The SDK's search pager is not iterated (it repeats page 1):
each page is one ``search`` call with an explicit ``starting_after``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pydantic
from intercom import (
    Intercom,
    MultipleFilterSearchRequest,
    SingleFilterSearchRequest,
    StartingAfterPaging,
)
from intercom.conversations import ConversationsManageRequestBody_Close
from intercom.core.api_error import ApiError
from intercom.core.request_options import RequestOptions

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    RateLimitedError,
    TransientError,
)
from fragment_core.redaction import redact, redact_url
from fragment_core.retries import HeaderPacer, RetryPolicy, retry_after_from_headers
from fragment_core.transport import BearerAuth, Transport
from fragment_intercom.config import IntercomConfig

T = TypeVar("T")

#: The one retry loop is ours (Transport.call): the SDK must not retry as well.
NO_SDK_RETRIES: RequestOptions = {"max_retries": 0}
#: What the SDK is given as its token; our BearerAuth sets the real Authorization header.
SDK_TOKEN_PLACEHOLDER = "set-by-fragment-transport"
#: Seconds to wait after a 429 that carries no X-RateLimit-Reset (Intercom's window is 10 s).
DEFAULT_429_WAIT = 10.0
#: Codes Intercom uses when the token is valid but may not do this.
PERMISSION_CODES = {"forbidden", "action_forbidden"}

#: Filter = (field, operator, value) in Intercom's search syntax.
Filter = tuple[str, str, Any]


class ConversationNotFoundError(ConfigurationError):
    """Intercom answered 404 for a conversation."""


@dataclass(frozen=True)
class Operation:
    """One kind of call: how errors name it and the app permission it needs."""

    action: str
    permission: str


SEARCH = Operation("search conversations", "Read conversations")
READ = Operation("read a conversation", "Read conversations")
CLOSE = Operation("close a conversation", "Write conversations")
ME = Operation("read the token's admin and workspace (/me)", "Read admins")


@dataclass(frozen=True)
class SearchPage:
    """One page of a conversation search, as plain JSON data."""

    conversations: list[Any]
    total_count: int | None
    next: str | None


def _as_data(item: Any) -> Any:
    """An SDK model as the JSON it was built from (only the keys the answer carried, values
    as they came: the SDK's lenient models keep a wrong type as it is, and its own dump
    warns about them); anything the SDK built no model of (a dict, a string) as it came."""
    if isinstance(item, pydantic.BaseModel):
        fields = type(item).model_fields
        given = item.model_fields_set
        data = {  # in the model's field order: the same bytes in every process
            (field.alias or name): _as_data(getattr(item, name))
            for name, field in fields.items()
            if name in given
        }
        data.update((key, _as_data(value)) for key, value in (item.model_extra or {}).items())
        return data
    if isinstance(item, list):
        return [_as_data(value) for value in item]
    if isinstance(item, dict):
        return {key: _as_data(value) for key, value in item.items()}
    if isinstance(item, enum.Enum):
        return item.value
    return item


def _error_parts(body: Any) -> tuple[str, str]:
    """(code, message) of Intercom's ``error.list`` body (model, dict or text)."""
    body = _as_data(body)
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            first = errors[0]
            return str(first.get("code") or ""), str(first.get("message") or "")
        return str(body.get("code") or ""), str(body.get("message") or "")
    return "", str(body or "")[:200]


class IntercomClient:
    """Conversation search, read and close, and ``/me``, with our errors and retries."""

    def __init__(self, config: IntercomConfig, *, where: str) -> None:
        self.config = config
        self.where = where
        self.base_url = config.api_base_url
        self._token = config.access_token.get_secret_value()
        # X-RateLimit-Remaining at 0 holds the next request until X-RateLimit-Reset (unix)
        self.rate_limit = HeaderPacer(
            config.requests_per_minute or None,
            remaining_header="X-RateLimit-Remaining",
            reset_header="X-RateLimit-Reset",
        )
        retry = RetryPolicy(attempts=config.max_attempts) if config.max_attempts else None
        self.transport = Transport(
            self.base_url,
            auth=BearerAuth(self._token),
            headers={"Intercom-Version": config.api_version, "Accept": "application/json"},
            timeout=config.timeout,
            retry=retry,
            pacer=self.rate_limit,
            name=where,
        )
        self.sdk = Intercom(
            base_url=self.base_url,
            token=SDK_TOKEN_PLACEHOLDER,
            httpx_client=self.transport.httpx_client,
            timeout=config.timeout,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.transport.close()

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, operation: Operation, fn: Callable[..., T], **kwargs: Any) -> T:
        return self.transport.call(
            fn,
            operation=operation.action,
            translate_exception=lambda exc: self.translate(exc, operation),
            request_options=NO_SDK_RETRIES,
            **kwargs,
        )

    def translate(self, exc: BaseException, operation: Operation) -> FragmentError | None:
        """An SDK or httpx exception as the error class the runner acts on (``None``:
        not ours to translate, re-raised as it is)."""
        if isinstance(exc, httpx.TransportError):
            return TransientError(
                f"could not reach Intercom at {redact_url(self.base_url)} to "
                f"{operation.action}: {type(exc).__name__}; check base_url/region and the "
                "network",
                where=self.where,
            )
        if not isinstance(exc, ApiError):
            return None
        status = exc.status_code or 0
        headers = dict(exc.headers or {})
        code, said = (redact(part, (self._token,)) for part in _error_parts(exc.body))
        detail = f"{said or 'no message'} (HTTP {status}{', ' + code if code else ''})"
        action = operation.action
        if 200 <= status < 300:  # the SDK could not decode a 2xx answer: cut short
            return TransientError(
                f"Intercom's answer to {action} was not complete JSON (cut short?); "
                "nothing is closed for it",
                where=self.where,
            )
        if status == 401 and code not in PERMISSION_CODES:
            return AuthenticationError(
                f"Intercom rejected the access token while trying to {action}: {detail}. "
                f"Check access_token (an app's token from Developer Hub > Authentication; "
                f"revoked or regenerated tokens stop working). A token only works in its "
                f"workspace's region: this source asks {redact_url(self.base_url)} "
                f'(region = "{self.config.region}"); a workspace hosted in Europe needs '
                'region = "eu", in Australia region = "au".',
                where=self.where,
            )
        if status in (401, 403) and code == "api_plan_restricted":
            return AuthenticationError(
                f"Intercom does not allow this workspace to {action} on its plan: {detail}.",
                where=self.where,
            )
        if status in (401, 403):
            return AuthenticationError(
                f"the Intercom access token lacks the permission to {action} ({detail}): "
                f"give the app the '{operation.permission}' permission in Developer Hub > "
                "your app > Authentication, then use its new token.",
                where=self.where,
            )
        if status == 429:
            wait = retry_after_from_headers(headers)
            return RateLimitedError(
                f"Intercom rate limit while trying to {action}: {detail}",
                retry_after=DEFAULT_429_WAIT if wait is None else wait,
                where=self.where,
            )
        if status >= 500 or status in (408, 409):
            return TransientError(f"Intercom failed to {action}: {detail}", where=self.where)
        if status == 404:
            return ConversationNotFoundError(
                f"Intercom found nothing to {action}: {detail}. If every call fails this way, "
                "check base_url.",
                where=self.where,
            )
        return ConfigurationError(f"Intercom refused to {action}: {detail}", where=self.where)

    # -- calls ----------------------------------------------------------------------------
    def search(
        self, filters: Sequence[Filter], *, per_page: int, starting_after: str | None = None
    ) -> SearchPage:
        """One page of ``POST /conversations/search``: every filter ANDed."""
        singles = [SingleFilterSearchRequest(field=f, operator=o, value=v) for f, o, v in filters]
        query: Any = (
            singles[0]
            if len(singles) == 1
            else MultipleFilterSearchRequest(operator="AND", value=singles)
        )
        pagination = StartingAfterPaging(per_page=per_page, starting_after=starting_after)
        pager = self._call(
            SEARCH, self.sdk.conversations.search, query=query, pagination=pagination
        )
        response = pager.response
        pages = response.pages
        following = pages.next.starting_after if pages is not None and pages.next else None
        return SearchPage(
            conversations=[_as_data(item) for item in response.conversations or []],
            total_count=response.total_count,
            next=following or None,
        )

    def state_of(self, conversation_id: str) -> str:
        """The conversation's ``state`` (``open``, ``snoozed``, ``closed``)."""
        found = self._call(READ, self.sdk.conversations.find, conversation_id=conversation_id)
        data = _as_data(found)
        if not isinstance(data, Mapping):
            raise TransientError(
                f"Intercom answered conversation {conversation_id} with no conversation",
                where=self.where,
            )
        state = data.get("state")
        if state is None and isinstance(data.get("open"), bool):
            state = "open" if data["open"] else "closed"
        return str(state or "")

    def close_conversation(self, conversation_id: str, admin_id: str, note: str | None) -> None:
        """``POST /conversations/{id}/parts`` with a close by ``admin_id`` (and a note)."""
        # no note: no "body" key at all (Intercom's schema has no null body)
        request = (
            ConversationsManageRequestBody_Close(admin_id=admin_id, body=note)
            if note
            else ConversationsManageRequestBody_Close(admin_id=admin_id)
        )
        self._call(
            CLOSE, self.sdk.conversations.manage, conversation_id=conversation_id, request=request
        )

    def me(self) -> dict[str, Any]:
        """``GET /me``: the token's admin, with its workspace (``app``)."""
        admin = self._call(ME, self.sdk.admins.identify)
        data = _as_data(admin)
        if not isinstance(data, dict):
            raise ConfigurationError(
                "Intercom's /me answer is empty; set app_id and admin_id in the source options",
                where=self.where,
            )
        return data
