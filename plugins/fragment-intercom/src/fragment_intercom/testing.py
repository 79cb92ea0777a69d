"""A fake Intercom (conversations, /me) on loopback, built on FakeVendor.

It serves the shapes of Intercom's OpenAPI description (version 2.14, shipped in this
package and used to validate every request and answer), checks searches the way Intercom
does (fields, operators, nesting, per_page at most 150), pages with opaque
``starting_after`` cursors over (updated_at, id), answers errors as ``error.list``,
signals rate limits with ``X-RateLimit-*`` headers (the reset a unix time) and counts
write-back effects (``close:<id>``)::

    intercom = FakeIntercom()
    intercom.add_conversations(300)
    with intercom.api:
        connector = IntercomConnector(intercom.config())
        ...
    assert not intercom.invalid_requests
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from fragment_core.testing import FakeRequest, FakeResponse
from fragment_core.testing.fakevendor import Clock, FakeVendor, RateLimit
from fragment_intercom.config import IntercomConfig

SEARCH_PATH = "/conversations/search"
CONVERSATION_PATH = "/conversations/{conversation_id}"
PARTS_PATH = "/conversations/{conversation_id}/parts"
ME_PATH = "/me"

READ = "read_conversations"
WRITE = "write_conversations"
ADMINS = "read_admins"
ALL_PERMISSIONS = frozenset({READ, WRITE, ADMINS})

TOKEN = "dG9rOmZha2UtaW50ZXJjb20tdG9rZW4tMTIzNDU2Nzg5MA=="
ADMIN_ID = "991267"
APP_ID = "abc123de"
#: Intercom's documented search page-size cap.
MAX_PER_PAGE = 150
OPERATORS = {"=", "!=", "IN", "NIN", "<", "<=", ">", ">=", "~", "!~", "^", "$"}
SEARCHABLE = {
    "id", "state", "open", "read", "priority", "updated_at", "created_at", "waiting_since",
    "snoozed_until", "admin_assignee_id", "team_assignee_id", "tag_ids", "contact_ids",
    "source.author.email", "source.subject", "source.type",
}  # fmt: skip
MAX_FILTERS_PER_GROUP = 15
RATE_LIMIT_MESSAGE = "Exceeded rate limit of 10000 in 10_seconds"
MAX_NESTING = 2


def openapi_path() -> Any:
    """Intercom's OpenAPI description (2.14, the operations used) shipped with the package."""
    return resources.files("fragment_intercom") / "openapi" / "intercom-2.14.json"


def error_list(code: str, message: str) -> dict[str, Any]:
    """Intercom's error body."""
    return {
        "type": "error.list",
        "request_id": str(uuid.uuid4()),
        "errors": [{"code": code, "message": message}],
    }


class SearchError(ValueError):
    """A search Intercom would refuse (answered 400 with ``error.list``)."""


def _cursor(key: tuple[int, int], page: int) -> str:
    return base64.b64encode(json.dumps([key[0] * 1000, key[1], page]).encode()).decode()


def _uncursor(token: str) -> tuple[tuple[int, int], int]:
    try:
        millis, ident, page = json.loads(base64.b64decode(token, validate=True))
        return (int(millis) // 1000, int(ident)), int(page)
    except (ValueError, TypeError) as exc:
        raise SearchError(f"starting_after {token[:40]!r} is not a cursor this API gave") from exc


def _values(conversation: Mapping[str, Any], field: str) -> list[Any]:
    if field == "tag_ids":
        return [t["id"] for t in conversation.get("tags", {}).get("tags", [])]
    if field == "contact_ids":
        return [c["id"] for c in conversation.get("contacts", {}).get("contacts", [])]
    value: Any = conversation
    for part in field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return [] if value is None else [value]


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, bool):
        return str(wanted).lower() in (("true", "1") if actual else ("false", "0"))
    return str(actual) == str(wanted)


def _single(conversation: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    field, operator, value = node.get("field"), node.get("operator"), node.get("value")
    if field not in SEARCHABLE:
        raise SearchError(f"field {field!r} is not searchable")
    if operator not in OPERATORS:
        raise SearchError(f"operator {operator!r} is not supported")
    have = _values(conversation, str(field))
    if operator in ("IN", "NIN"):
        if not isinstance(value, list):
            raise SearchError(f"{operator} needs a list value for {field}")
        hit = any(_same(a, w) for a in have for w in value)
        return hit if operator == "IN" else not hit
    if isinstance(value, list):
        raise SearchError(f"operator {operator!r} takes a single value for {field}")
    if operator in ("=", "!="):
        hit = any(_same(a, value) for a in have)
        return hit if operator == "=" else not hit
    if operator in (">", ">=", "<", "<="):
        try:
            number = int(str(value))
        except ValueError:
            raise SearchError(f"{field} {operator} needs a number, got {value!r}") from None
        # Intercom: ">" is greater or equal, "<" lower or equal
        if operator.startswith(">"):
            return any(isinstance(a, int) and a >= number for a in have)
        return any(isinstance(a, int) and a <= number for a in have)
    text = str(value)
    texts = [str(a) for a in have]
    return {
        "~": any(text in t for t in texts),
        "!~": not any(text in t for t in texts),
        "^": any(t.startswith(text) for t in texts),
        "$": any(t.endswith(text) for t in texts),
    }[operator]


def _matches(conversation: Mapping[str, Any], node: Any, depth: int = 0) -> bool:
    if not isinstance(node, Mapping):
        raise SearchError("a query is an object")
    if "field" in node:
        return _single(conversation, node)
    operator, value = node.get("operator"), node.get("value")
    if operator not in ("AND", "OR") or not isinstance(value, list) or not value:
        raise SearchError("a filter group needs operator AND or OR and a list of filters")
    if depth >= MAX_NESTING:
        raise SearchError(f"filters nest at most {MAX_NESTING} deep")
    if len(value) > MAX_FILTERS_PER_GROUP:
        raise SearchError(f"at most {MAX_FILTERS_PER_GROUP} filters in one group")
    results = [_matches(conversation, child, depth + 1) for child in value]
    return all(results) if operator == "AND" else any(results)


class FakeIntercom(FakeVendor):
    """Intercom's conversation APIs over a versioned store (``self.conversations``).

    ``region`` is what ``/me`` reports for the workspace (``app.region``); any other
    token, a workspace of another region's included, is rejected as Intercom does (401).
    ``rate_limit_per_minute`` turns on Intercom's limit, applied per 10-second window
    (``rate_window``: shorter in tests).
    """

    def __init__(
        self,
        *,
        token: str = TOKEN,
        permissions: Iterable[str] = ALL_PERMISSIONS,
        region: str = "US",
        app_id: str = APP_ID,
        admin_id: str = ADMIN_ID,
        rate_limit_per_minute: int | None = None,
        rate_window: float = 10.0,
        clock: Clock | None = None,
        search_lag: timedelta = timedelta(0),
        validate: bool = True,
    ) -> None:
        limit = None
        if rate_limit_per_minute:
            limit = RateLimit(
                requests=math.ceil(rate_limit_per_minute * rate_window / 60),
                window=rate_window,
                headers=self._limit_headers_after,
                body=error_list("rate_limit_exceeded", RATE_LIMIT_MESSAGE),
            )
        super().__init__(
            "intercom",
            token=token,
            scopes=permissions,
            openapi=Path(str(openapi_path())) if validate else None,  # parsed once a process
            clock=clock or Clock(datetime(2025, 5, 1, tzinfo=UTC)),
            search_lag=search_lag,
            rate_limit=limit,
        )
        self.region = region
        self.app_id = app_id
        self.admin_id = admin_id
        self.admins = {admin_id}
        self.notes: dict[str, list[str]] = {}
        self._ids = itertools.count(215473958422917)
        self._routes()

    # -- vendor-shaped answers ------------------------------------------------------------
    def unauthorized(self, req: FakeRequest) -> FakeResponse:
        return FakeResponse(401, json=error_list("unauthorized", "Access Token Invalid"))

    def forbidden(self, req: FakeRequest, scope: str) -> FakeResponse:
        return FakeResponse(
            403, json=error_list("forbidden", "You do not have permission to access this resource")
        )

    def invalid(self, message: str) -> FakeResponse:
        with self._lock:
            self.invalid_requests.append(message)
        return FakeResponse(400, json=error_list("parameter_invalid", message))

    def not_found(self) -> FakeResponse:
        return FakeResponse(404, json=error_list("not_found", "Resource Not Found"))

    def _limit_headers_after(self, wait: float) -> dict[str, str]:
        assert self.rate_limit is not None
        return {
            "X-RateLimit-Limit": str(self.rate_limit.requests),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(time.time() + wait)),
        }

    def _limit_headers(self) -> dict[str, str]:
        limit = self.rate_limit
        if limit is None:
            return {
                "X-RateLimit-Limit": "1667",
                "X-RateLimit-Remaining": "1666",
                "X-RateLimit-Reset": str(math.ceil(time.time() + 10)),
            }
        with self._lock:
            left, reset_in = limit.remaining(), limit.reset_in()
        return {
            "X-RateLimit-Limit": str(limit.requests),
            "X-RateLimit-Remaining": str(left),
            "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in)),
        }

    def answer(self, payload: Any, status: int = 200) -> FakeResponse:
        """A JSON answer with Intercom's rate-limit headers."""
        return FakeResponse(status, json=payload, headers=self._limit_headers())

    def rate_limit_next(self, n: int = 1, *, wait: float = 1.0) -> None:
        """The next ``n`` requests get Intercom's 429 (``X-RateLimit-Reset`` a unix time)."""
        self.api.rate_limit_next(
            n,
            scheme="x-ratelimit-reset",
            wait=wait,
            body=error_list("rate_limit_exceeded", RATE_LIMIT_MESSAGE),
        )

    # -- data -----------------------------------------------------------------------------
    @property
    def conversations(self) -> dict[str, dict[str, Any]]:
        """The live conversations by id."""
        return self.store.records

    def now(self) -> int:
        """The fake's time as a unix time."""
        return int(self.clock.now().timestamp())

    def add_conversation(self, **fields: Any) -> str:
        """Store a conversation (defaults: open, customer-initiated); returns its id."""
        conversation_id = str(fields.pop("id", None) or next(self._ids))
        now = self.now()
        created = fields.pop("created_at", now)
        subject = fields.pop("subject", "")
        body = fields.pop("body", f"<p>Question <b>{conversation_id}</b></p>")
        email = fields.pop("email", f"customer{conversation_id[-4:]}@example.com")
        tags = fields.pop("tags", [])
        state = fields.get("state", "open")
        conversation: dict[str, Any] = {
            "type": "conversation",
            "id": conversation_id,
            "title": None,
            "created_at": created,
            "updated_at": created,
            "waiting_since": created,
            "snoozed_until": None,
            "open": state != "closed",
            "state": state,
            "read": False,
            "priority": "not_priority",
            "admin_assignee_id": None,
            "team_assignee_id": None,
            "tags": {
                "type": "tag.list",
                "tags": [{"type": "tag", "id": str(t), "name": f"tag-{t}"} for t in tags],
            },
            "source": {
                "type": "conversation",
                "id": str(next(self._ids)),
                "delivered_as": "customer_initiated",
                "subject": subject,
                "body": body,
                "author": {
                    "type": "user",
                    "id": f"6762f1571bb69f9f2193{conversation_id[-4:]}",
                    "name": "Jane Roe",
                    "email": email,
                },
                "attachments": [],
                "url": None,
                "redacted": False,
            },
            "contacts": {
                "type": "contact.list",
                "contacts": [
                    {"type": "contact", "id": f"c-{conversation_id}", "external_id": None}
                ],
            },
            "teammates": {"type": "admin.list", "teammates": []},
            "custom_attributes": {},
            "sla_applied": None,
            "ai_agent_participated": False,
        }
        conversation.update(fields)
        if "state" in fields and "open" not in fields:
            conversation["open"] = fields["state"] != "closed"
        self._put(conversation_id, conversation)
        return conversation_id

    def add_conversations(self, n: int, **fields: Any) -> list[str]:
        """Store ``n`` conversations alike; returns their ids."""
        return [self.add_conversation(**fields) for _ in range(n)]

    def update(self, conversation_id: str, **changes: Any) -> None:
        """Change a conversation (its updated_at becomes now unless given)."""
        conversation = dict(self.conversations[conversation_id])
        conversation.update(changes)
        if "state" in changes and "open" not in changes:
            conversation["open"] = changes["state"] != "closed"
        conversation.setdefault("updated_at", self.now())
        if "updated_at" not in changes:
            conversation["updated_at"] = max(self.now(), conversation["updated_at"])
        self._put(conversation_id, conversation)

    def _put(self, conversation_id: str, conversation: dict[str, Any]) -> None:
        at = conversation.get("updated_at")
        stamp = datetime.fromtimestamp(at, tz=UTC) if isinstance(at, int) else None
        self.store.put(conversation_id, conversation, at=stamp)

    def open_ids(self) -> set[str]:
        """Ids of the conversations in the open state."""
        return {i for i, c in self.conversations.items() if c.get("state") == "open"}

    def closes(self, conversation_id: str) -> int:
        """How many times a close took effect on ``conversation_id``."""
        return self.effect_count("close", conversation_id)

    def config(self, **options: Any) -> IntercomConfig:
        """An IntercomConfig pointed at this fake (the base URL set)."""
        values: dict[str, Any] = {"access_token": self.token, "base_url": self.api.base_url}
        if self.region.lower()[:2] in ("eu", "au"):
            values["region"] = self.region.lower()[:2]
        values.update(options)
        return IntercomConfig(**values)

    # -- routes ---------------------------------------------------------------------------
    def _routes(self) -> None:
        self.route("GET", ME_PATH, scope=ADMINS)(self._me)
        self.route("POST", SEARCH_PATH, scope=READ, items="conversations")(self._search)
        self.route("GET", CONVERSATION_PATH, scope=READ)(self._get)
        self.route("POST", PARTS_PATH, scope=WRITE)(self._manage)

    def _me(self, req: FakeRequest) -> FakeResponse:
        return self.answer(
            {
                "type": "admin",
                "id": self.admin_id,
                "name": "Ops Bot",
                "email": "ops@example.com",
                "email_verified": True,
                "app": {
                    "type": "app",
                    "id_code": self.app_id,
                    "name": "Example Support",
                    "region": self.region,
                    "timezone": "Europe/London",
                    "created_at": 1600000000,
                    "identity_verification": False,
                },
            }
        )

    def _search(self, req: FakeRequest) -> FakeResponse:
        body = req.json()
        if not isinstance(body, dict) or "query" not in body:
            return self.invalid("search body needs a query")
        pagination = body.get("pagination") or {}
        per_page = pagination.get("per_page") or 20
        if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
            return self.invalid(f"per_page must be 1..{MAX_PER_PAGE}, got {per_page!r}")
        try:
            hits = [c for _, c in self.store.searchable() if _matches(c, body["query"])]
            after = pagination.get("starting_after")
            start, page = (None, 1) if not after else _uncursor(str(after))
        except SearchError as exc:
            return self.invalid(str(exc))
        hits.sort(key=lambda c: (c["updated_at"], int(c["id"])))
        keyed = [c for c in hits if start is None or (c["updated_at"], int(c["id"])) > start]
        chunk = [dict(c) for c in keyed[:per_page]]
        pages: dict[str, Any] = {
            "type": "pages",
            "page": page,
            "per_page": per_page,
            "total_pages": max(1, math.ceil(len(hits) / per_page)),
        }
        if len(keyed) > per_page:
            last = chunk[-1]
            pages["next"] = {
                "per_page": per_page,
                "starting_after": _cursor((last["updated_at"], int(last["id"])), page + 1),
            }
        return self.answer(
            {
                "type": "conversation.list",
                "conversations": chunk,
                "total_count": len(hits),
                "pages": pages,
            }
        )

    def _get(self, req: FakeRequest) -> FakeResponse:
        conversation = self.conversations.get(req.path_params["conversation_id"])
        if conversation is None:
            return self.not_found()
        return self.answer(
            {**conversation, "conversation_parts": {"type": "conversation_part.list",
                                                     "conversation_parts": [], "total_count": 0}}
        )  # fmt: skip

    def _manage(self, req: FakeRequest) -> FakeResponse:
        conversation_id = req.path_params["conversation_id"]
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            return self.not_found()
        body = req.json() or {}
        if body.get("message_type") != "close":
            return self.invalid(f"this fake only closes, not {body.get('message_type')!r}")
        if str(body.get("admin_id")) not in self.admins:
            return self.invalid(f"admin_id {body.get('admin_id')!r} is not a teammate here")
        if conversation.get("state") != "closed":
            self.clock.advance(seconds=1)
            self.update(conversation_id, state="closed", open=False)
            self.effect("close", conversation_id)
            if body.get("body"):
                self.notes.setdefault(conversation_id, []).append(str(body["body"]))
        return self.answer(self.conversations[conversation_id])
