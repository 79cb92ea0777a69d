"""A thin client over hubspot-api-client: raw JSON in and out, typed errors, retries, pacing.

The SDK's generated APIs are called with ``_preload_content=False`` so results stay plain
dicts (one malformed task then fails alone in mapping, not the whole page in the SDK's
model layer). urllib3's own retries are switched off: 429s and 5xx go through
:func:`fragment_core.retries.call_with_retries`, which waits out HubSpot's hints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
import hubspot
import urllib3
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects.tasks import (
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectInput,
)

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    RateLimitedError,
    TransientError,
)
from fragment_core.redaction import redact
from fragment_core.retries import (
    Pacer,
    call_with_retries,
    error_for_status,
    retry_after_from_headers,
)
from fragment_core.transport import BearerAuth, guarded_client
from fragment_hubspot.config import HubSpotConfig

T = TypeVar("T")

#: Seconds to wait after a 429 without Retry-After, by HubSpot's ``policyName``.
POLICY_WAITS = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0}


class TaskNotFoundError(ConfigurationError):
    """HubSpot answered 404: the task (or, for a search, the API path) does not exist."""


def _error_body(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": str(raw)[:300]}
    return body if isinstance(body, dict) else {}


def _missing_scopes(body: Mapping[str, Any]) -> list[str]:
    scopes: list[str] = []
    for error in body.get("errors") or []:
        context = error.get("context") if isinstance(error, dict) else None
        if not isinstance(context, dict):
            continue
        for key in ("requiredGranularScopes", "requiredScopes"):
            for scope in context.get(key) or []:
                if scope not in scopes:
                    scopes.append(str(scope))
    return scopes


def translate_error(
    status: int, headers: Mapping[str, str], raw_body: Any, *, where: str, action: str
) -> FragmentError:
    """Turn a HubSpot error response into the error class the runner acts on.

    Messages quote HubSpot's own ``message`` and ``category`` (never the request, so never
    the token) and say what a person can do about it.
    """
    body = _error_body(raw_body)
    message = str(body.get("message") or "").strip() or f"HTTP {status}"
    category = str(body.get("category") or body.get("errorType") or "")
    detail = f"{message} (HTTP {status}{', ' + category if category else ''})"
    if status == 401:
        return AuthenticationError(
            f"HubSpot rejected the access token while trying to {action}: {detail}. "
            "Check that access_token is a valid private app or OAuth token for this "
            "account and has not expired or been rotated.",
            where=where,
        )
    if status == 403 and category == "MISSING_SCOPES":
        scopes = _missing_scopes(body)
        named = ", ".join(scopes) if scopes else "a scope HubSpot did not name"
        return AuthenticationError(
            f"the HubSpot access token lacks the scope {named} needed to {action}. "
            "Add it to the private app (Settings > Integrations > Private apps > Scopes) "
            "or the OAuth app, then use the new token.",
            where=where,
        )
    if status == 403:
        return AuthenticationError(
            f"HubSpot refused to {action}: {detail}. Check the token's account and scopes.",
            where=where,
        )
    if status == 429:
        policy = str(body.get("policyName") or "")
        if policy == "DAILY":
            return FragmentError(
                f"HubSpot's daily API limit for this account is used up ({detail}); "
                "the source can run again after the daily reset.",
                where=where,
            )
        wait = retry_after_from_headers(headers)
        if wait is None:
            wait = POLICY_WAITS.get(policy, 1.0)
        return RateLimitedError(
            f"HubSpot rate limit {policy or 'unknown policy'} while trying to {action}",
            retry_after=wait,
            where=where,
        )
    if status == 404:
        return TaskNotFoundError(
            f"HubSpot found nothing to {action}: {detail}. If every call fails this way, "
            "check base_url.",
            where=where,
        )
    error = error_for_status(status, headers, f"{action}: {detail}", where=where)
    return error or TransientError(f"{action}: unexpected HTTP {status}", where=where)


class HubSpotClient:
    """The HubSpot calls the connector makes, through the official SDK."""

    def __init__(self, config: HubSpotConfig, *, where: str) -> None:
        self.config = config
        self.where = where
        self._sdk = hubspot.Client.create(
            access_token=config.access_token.get_secret_value(),
            host=config.base_url,
            retry=False,
        )
        # each attribute access builds a new ApiClient: build them once
        self._search_api = self._sdk.crm.objects.tasks.search_api
        self._basic_api = self._sdk.crm.objects.tasks.basic_api
        self._associations_api = self._sdk.crm.associations.v4.batch_api
        self.search_pacer = Pacer.per_second(config.search_requests_per_second)

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, action: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """One SDK call -> decoded JSON dict, errors translated; no retries here."""
        try:
            response = fn()
        except hubspot.crm.objects.tasks.ApiException as exc:
            raise self._translate(exc, action) from None
        except hubspot.crm.associations.v4.ApiException as exc:
            raise self._translate(exc, action) from None
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(
                f"could not reach HubSpot to {action}: {type(exc).__name__}; "
                f"check base_url ({self.config.base_url}) and the network",
                where=self.where,
            ) from None
        except AttributeError as exc:
            # On a TLS failure the SDK raises ApiException(status=0, body=None) and then
            # trips over that body itself (``e.body.decode``): report the TLS failure.
            cause = exc.__context__
            if getattr(cause, "status", None) != 0:
                raise
            reason = " ".join(str(getattr(cause, "reason", "") or "").split())
            raise TransientError(
                f"could not reach HubSpot to {action}: {reason or 'connection failed'}",
                where=self.where,
            ) from None
        raw = response.data
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise TransientError(
                f"HubSpot sent a response that is not JSON while trying to {action}",
                where=self.where,
            ) from None
        if not isinstance(data, dict):
            raise TransientError(
                f"HubSpot sent an unexpected response while trying to {action}", where=self.where
            )
        return data

    def _translate(self, exc: Any, action: str) -> FragmentError:
        if not exc.status:  # the SDK's own transport failure (status 0)
            return TransientError(f"could not reach HubSpot to {action}", where=self.where)
        headers = dict(exc.headers or {})
        body = self._redact(exc.body)
        return translate_error(exc.status, headers, body, where=self.where, action=action)

    def _redact(self, raw: Any) -> Any:
        """An error body with the access token masked (HubSpot may echo what it was sent)."""
        secrets = (self.config.access_token.get_secret_value(),)
        if isinstance(raw, bytes):
            return redact(raw.decode("utf-8", "replace"), secrets).encode()
        if isinstance(raw, str):
            return redact(raw, secrets)
        return raw

    def _retrying(self, action: str, fn: Callable[[], Any]) -> dict[str, Any]:
        return call_with_retries(self._call, action, fn)

    # -- calls ----------------------------------------------------------------------------
    def search(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /crm/v3/objects/tasks/search`` with ``body`` in HubSpot's JSON shape."""
        request = PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(
                            property_name=f["propertyName"],
                            operator=f["operator"],
                            value=f.get("value"),
                            values=f.get("values"),
                        )
                        for f in group["filters"]
                    ]
                )
                for group in body.get("filterGroups", [])
            ],
            sorts=list(body.get("sorts", [])),
            properties=list(body.get("properties", [])),
            limit=body.get("limit"),
            after=body.get("after"),
        )

        def paced() -> Any:
            self.search_pacer.wait()
            return self._search_api.do_search(
                public_object_search_request=request,
                _preload_content=False,
                _request_timeout=self.config.timeout,
            )

        return self._retrying("search tasks", paced)

    def get_task(self, task_id: str, properties: list[str]) -> dict[str, Any]:
        """``GET /crm/v3/objects/tasks/{id}`` with the given properties."""
        return self._retrying(
            f"read task {task_id}",
            lambda: self._basic_api.get_by_id(
                task_id,
                properties=properties,
                _preload_content=False,
                _request_timeout=self.config.timeout,
            ),
        )

    def update_task(self, task_id: str, properties: Mapping[str, str]) -> dict[str, Any]:
        """``PATCH /crm/v3/objects/tasks/{id}`` with ``{"properties": ...}``."""
        payload = SimplePublicObjectInput(properties=dict(properties))
        return self._retrying(
            f"update task {task_id}",
            lambda: self._basic_api.update(
                task_id,
                payload,
                _preload_content=False,
                _request_timeout=self.config.timeout,
            ),
        )

    def associated_ids(self, to_object_type: str, task_ids: list[str]) -> dict[str, list[str]]:
        """Ids of ``to_object_type`` records associated with each task (v4 batch read)."""
        if not task_ids:
            return {}
        request = BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=task_id) for task_id in task_ids]
        )
        data = self._retrying(
            f"read task associations to {to_object_type}",
            lambda: self._associations_api.get_page(
                "tasks",
                to_object_type,
                request,
                _preload_content=False,
                _request_timeout=self.config.timeout,
            ),
        )
        found: dict[str, list[str]] = {}
        for result in data.get("results") or []:
            if not isinstance(result, dict):
                continue
            task_id = str((result.get("from") or {}).get("id", ""))
            found[task_id] = [
                str(item["toObjectId"])
                for item in result.get("to") or []
                if isinstance(item, dict) and item.get("toObjectId") is not None
            ]
        return found

    def account_details(self) -> dict[str, Any]:
        """``GET /account-info/v3/details`` (portalId, uiDomain, ...).

        The SDK has no generated API for it and its generic ``api_request`` helper has no
        timeout, so this one call uses httpx.
        """

        def get() -> dict[str, Any]:
            try:
                token = self.config.access_token.get_secret_value()
                with guarded_client(
                    self.config.base_url,
                    auth=BearerAuth(token),
                    timeout=self.config.timeout,
                    where=self.where,
                ) as client:  # the token stays on base_url's origin, redirects included
                    response = client.get("/account-info/v3/details")
            except httpx.TransportError as exc:
                raise TransientError(
                    "could not reach HubSpot to read the account details: "
                    f"{type(exc).__name__}; check base_url ({self.config.base_url}) and the "
                    "network",
                    where=self.where,
                ) from None
            if response.status_code >= 400:
                raise translate_error(
                    response.status_code,
                    response.headers,
                    self._redact(response.content),
                    where=self.where,
                    action="read the account details",
                )
            try:
                data = response.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ConfigurationError(
                    "HubSpot's account details are not a JSON object; set portal_id in the "
                    "source options",
                    where=self.where,
                )
            return data

        return call_with_retries(get)
