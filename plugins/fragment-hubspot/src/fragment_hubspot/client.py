"""HubSpot through its official SDK, on the kit's :class:`~fragment_core.transport.Transport`.

Every SDK call goes through :meth:`Transport.call_openapi` (pacer, retries by error
class, errors named and redacted, connection failures retried, results as plain dicts);
urllib3's own retries are off. Request bodies are plain JSON dicts, which the SDK
serializes as given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import httpx
import hubspot
from hubspot.crm.associations.v4 import ApiException as AssociationsApiException
from hubspot.crm.objects.tasks import ApiException as TasksApiException

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    RateLimitedError,
    TransientError,
)
from fragment_core.retries import Pacer, retry_after_from_headers
from fragment_core.transport import BearerAuth, Transport, error_body, json_object
from fragment_hubspot.config import HubSpotConfig

#: Seconds to wait after a 429 without Retry-After, by HubSpot's ``policyName``.
POLICY_WAITS = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0}


class TaskNotFoundError(ConfigurationError):
    """HubSpot answered 404: the task (or, for a search, the API path) does not exist."""


class MissingScopeError(AuthenticationError):
    """The access token lacks a scope the call needs (HubSpot's 403 MISSING_SCOPES)."""


def _missing_scopes(body: Mapping[str, Any]) -> list[str]:
    errors = [error for error in body.get("errors") or [] if isinstance(error, dict)]
    contexts = [error.get("context") or {} for error in errors]
    keys = ("requiredGranularScopes", "requiredScopes")
    return list(dict.fromkeys(str(s) for c in contexts for k in keys for s in c.get(k) or []))


def hubspot_error(response: httpx.Response, action: str) -> FragmentError | None:
    """The error class the runner acts on for HubSpot's failed ``response`` to ``action``
    (``None``: the Transport's default mapping).

    Messages quote HubSpot's own ``message`` and ``category`` (never the request, so never
    the token) and say what a person can do about it.
    """
    status, body = response.status_code, error_body(response)
    category = str(body.get("category") or body.get("errorType") or "")
    message = str(body.get("message") or "").strip() or f"HTTP {status}"
    detail = f"{message} (HTTP {status}{', ' + category if category else ''})"
    if status == 401:
        return AuthenticationError(
            f"HubSpot rejected the access token while trying to {action}: {detail}. "
            "Check that access_token is a valid private app or OAuth token for this "
            "account and has not expired or been rotated."
        )
    if status == 403 and category == "MISSING_SCOPES":
        named = ", ".join(_missing_scopes(body)) or "a scope HubSpot did not name"
        return MissingScopeError(
            f"the HubSpot access token lacks the scope {named} needed to {action}. "
            "Add it to the private app (Settings > Integrations > Private apps > Scopes) "
            "or the OAuth app, then use the new token."
        )
    if status == 403:
        return AuthenticationError(
            f"HubSpot refused to {action}: {detail}. Check the token's account and scopes."
        )
    if status == 429:
        policy = str(body.get("policyName") or "")
        if policy == "DAILY":
            return FragmentError(
                f"HubSpot's daily API limit for this account is used up ({detail}); "
                "the source can run again after the daily reset."
            )
        wait = retry_after_from_headers(response.headers)
        return RateLimitedError(
            f"HubSpot rate limit {policy or 'unknown policy'} while trying to {action}",
            retry_after=POLICY_WAITS.get(policy, 1.0) if wait is None else wait,
        )
    if status == 404:
        return TaskNotFoundError(
            f"HubSpot found nothing to {action}: {detail}. If every call fails this way, "
            "check base_url."
        )
    return None


class HubSpotClient:
    """The HubSpot calls the connector makes, through the official SDK."""

    def __init__(self, config: HubSpotConfig, *, where: str) -> None:
        self.config = config
        token = config.access_token.get_secret_value()
        self.transport = Transport(
            config.base_url, auth=BearerAuth(token), timeout=config.timeout, name=where
        )
        sdk = hubspot.Client.create(access_token=token, host=config.base_url, retry=False)
        # each attribute access builds a new ApiClient: build them once
        self._search_api = sdk.crm.objects.tasks.search_api
        self._basic_api = sdk.crm.objects.tasks.basic_api
        self._associations_api = sdk.crm.associations.v4.batch_api
        self.search_pacer = Pacer.per_second(config.search_requests_per_second)

    def close(self) -> None:
        """Close the HTTP connections of :meth:`account_details`."""
        self.transport.close()

    def _sdk(
        self, action: str, method: Callable[..., Any], *args: Any, pacer: Pacer | None = None,
        **params: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """One SDK call through the Transport -> decoded JSON dict, errors translated."""
        return self.transport.call_openapi(
            method,
            *args,
            operation=action,
            vendor="HubSpot",
            exceptions=(TasksApiException, AssociationsApiException),
            timeout=self.config.timeout,
            translate_error=partial(hubspot_error, action=action),
            pacer=pacer,
            **params,
        )

    # -- calls ----------------------------------------------------------------------------
    def search(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /crm/v3/objects/tasks/search`` with ``body`` in HubSpot's JSON shape."""
        do_search = self._search_api.do_search
        return self._sdk("search tasks", do_search, dict(body), pacer=self.search_pacer)

    def get_task(self, task_id: str, properties: list[str]) -> dict[str, Any]:
        """``GET /crm/v3/objects/tasks/{id}`` with the given properties."""
        get = self._basic_api.get_by_id
        return self._sdk(f"read task {task_id}", get, task_id, properties=properties)

    def update_task(self, task_id: str, properties: Mapping[str, str]) -> dict[str, Any]:
        """``PATCH /crm/v3/objects/tasks/{id}`` with ``{"properties": ...}``."""
        body = {"properties": dict(properties)}
        return self._sdk(f"update task {task_id}", self._basic_api.update, task_id, body)

    def associated_ids(self, to_object_type: str, task_ids: list[str]) -> dict[str, list[str]]:
        """Ids of ``to_object_type`` records associated with each task (v4 batch read)."""
        if not task_ids:
            return {}
        body = {"inputs": [{"id": task_id} for task_id in task_ids]}
        data = self._sdk(
            f"read task associations to {to_object_type}",
            self._associations_api.get_page, "tasks", to_object_type, body,
        )  # fmt: skip
        return {
            str((result.get("from") or {}).get("id", "")): [
                str(item["toObjectId"])
                for item in result.get("to") or []
                if isinstance(item, dict) and item.get("toObjectId") is not None
            ]
            for result in data.get("results") or []
            if isinstance(result, dict)
        }

    def account_details(self) -> dict[str, Any]:
        """``GET /account-info/v3/details`` (portalId, uiDomain, ...).

        The SDK has no generated API for it (its generic ``api_request`` has no timeout),
        so this one call is a plain Transport request.
        """
        action = "read the account details"
        response = self.transport.request(
            "GET",
            "/account-info/v3/details",
            operation=action,
            translate_error=partial(hubspot_error, action=action),
        )
        try:
            return json_object(response.content, "HubSpot's account details")
        except TransientError:
            raise ConfigurationError(
                "HubSpot's account details are not a JSON object; set portal_id in the "
                "source options",
                where=self.transport.where,
            ) from None
