"""A small typed client of ComplyAdvantage Mesh: token, workflows, cases, alerts.

The bearer token comes from ``POST /v2/token`` (username, password, realm) and lasts
``expires_in`` seconds; :class:`~fragment_core.transport.RefreshingBearerAuth` caches it,
renews it ``token_refresh_margin`` seconds early and once on a 401. Lists page by
``page_number`` / ``page_size`` and announce ``total_count``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

from fragment_complyadvantage.config import MeshConfig
from fragment_complyadvantage.http import (
    NotFoundError,
    error_message,
    fetch_json,
    make_transport,
    named,
    ratelimit_pacer,
)
from fragment_core.errors import AuthenticationError, ConfigurationError, FragmentError
from fragment_core.paging import Page, paginate
from fragment_core.redaction import redact
from fragment_core.transport import RefreshingBearerAuth

TOKEN_PATH = "/v2/token"


def identifier_of(item: Any) -> str | None:
    """A Mesh object's ``identifier`` (``None`` when it has none)."""
    if isinstance(item, Mapping) and isinstance(item.get("identifier"), str):
        return item["identifier"] or None
    return None


class MeshClient:
    """The calls the ``complyadvantage-mesh`` connector makes."""

    def __init__(self, config: MeshConfig, *, where: str) -> None:
        self.config = config
        self.where = where
        self.gate = ratelimit_pacer(config.requests_per_minute or None)
        self._password = config.password.get_secret_value()
        self.token_transport = make_transport(
            config.base_url,
            gate=self.gate,
            where=where,
            timeout=config.timeout,
            translate=self._translate_token,
        )
        self.auth = RefreshingBearerAuth(self._fetch_token, margin=config.token_refresh_margin)
        self.transport = make_transport(
            config.base_url,
            auth=self.auth,
            gate=self.gate,
            where=where,
            timeout=config.timeout,
            translate=self._translate,
        )

    def close(self) -> None:
        """Close both connection pools."""
        self.transport.close()
        self.token_transport.close()

    @property
    def requests_made(self) -> int:
        """Requests sent so far, the token's included (retries included)."""
        return self.transport.requests_made + self.token_transport.requests_made

    # -- errors ---------------------------------------------------------------------------
    def _said(self, response: httpx.Response) -> str:
        said = redact(error_message(response), (self._password, *self.auth.secrets))
        return f" (Mesh said: {said})" if said else ""

    def _translate_token(self, response: httpx.Response) -> FragmentError | None:
        if response.status_code in (400, 401, 403):
            return AuthenticationError(
                f"Mesh refused to sign in user {self.config.username!r} in realm "
                f"{self.config.realm!r} at {self.config.base_url} (HTTP "
                f"{response.status_code}){self._said(response)}. Check username, password "
                "and realm, and that base_url is your account's region (api.mesh..., "
                "api.eu.mesh... or api.au.mesh.complyadvantage.com): users of one region "
                "are unknown in another.",
                where=self.where,
            )
        if response.status_code == 404:
            return ConfigurationError(
                f"{self.config.base_url} has no Mesh token endpoint ({TOKEN_PATH}: HTTP 404): "
                "check base_url",
                where=self.where,
            )
        return None

    def _translate(self, response: httpx.Response) -> FragmentError | None:
        status = response.status_code
        asked = f"{response.request.method} {response.request.url.path}"
        if status == 401:
            return AuthenticationError(
                f"Mesh refused a fresh access token for {asked} (HTTP 401){self._said(response)}; "
                "check that the API user is active in this realm",
                where=self.where,
            )
        if status == 403:
            return AuthenticationError(
                f"the Mesh API user {self.config.username!r} lacks the permission for "
                f"{asked} (HTTP 403){self._said(response)}: give its role the permissions "
                "to view cases (and to review them, for write-back)",
                where=self.where,
            )
        if status == 404:
            return NotFoundError(f"{asked}: not found (HTTP 404)", where=self.where)
        return None

    # -- token ----------------------------------------------------------------------------
    def _fetch_token(self) -> tuple[str, float | None]:
        body = {"username": self.config.username, "password": self._password}
        body["realm"] = self.config.realm
        payload = fetch_json(
            self.token_transport, "POST", TOKEN_PATH, json=body, operation="get a Mesh token"
        )
        token = payload.get("access_token") if isinstance(payload, Mapping) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                "Mesh's token endpoint answered without an access_token", where=self.where
            )
        lifetime = payload.get("expires_in")
        valid = isinstance(lifetime, int | float) and not isinstance(lifetime, bool)
        return token, float(lifetime) if valid else None

    # -- reads ----------------------------------------------------------------------------
    def _get(self, path: str, operation: str, params: Mapping[str, Any] | None = None) -> Any:
        payload = fetch_json(self.transport, "GET", path, params=params, operation=operation)
        if not isinstance(payload, Mapping):
            raise ConfigurationError(
                f"{operation}: the answer is not a JSON object (is base_url the Mesh API?)",
                where=self.where,
            )
        return payload

    def workflows(self) -> list[Mapping[str, Any]]:
        """The case workflows (one per case type), each with its stages."""
        payload = self._get("/v2/cases/workflows", "read the case workflows")
        workflows = payload.get("workflows")
        if not isinstance(workflows, list):
            raise ConfigurationError(
                "read the case workflows: the answer has no workflows list", where=self.where
            )
        return [w for w in workflows if isinstance(w, Mapping)]

    def _paged(
        self, path: str, key: str, params: Mapping[str, Any], what: str
    ) -> Iterator[Any]:
        size = self.config.page_size
        fetched = 0

        def fetch(token: object | None) -> Page[Any]:
            nonlocal fetched
            number = self.config.first_page if token is None else int(str(token))
            query = {**params, "page_number": number, "page_size": size}
            payload = self._get(path, f"{what} (page {number})", query)
            items = payload.get(key)
            if not isinstance(items, list):
                raise ConfigurationError(
                    f"{what} (page {number}): the answer has no {key} list", where=self.where
                )
            total = payload.get("total_count")
            total = total if isinstance(total, int) and not isinstance(total, bool) else None
            fetched += len(items)
            more = bool(items) and (fetched < total if total is not None else len(items) >= size)
            return Page(items, number + 1 if more else None, total)

        return named(paginate(fetch, id_of=identifier_of, what=what), self.where)

    def cases(self, stage_ids: Iterable[str], case_types: Iterable[str] = ()) -> Iterator[Any]:
        """Every case in one of ``stage_ids`` (and of ``case_types``, when given)."""
        params: dict[str, Any] = {"stage.identifier": ",".join(stage_ids), "sort": "CREATED_AT"}
        types = ",".join(case_types)
        if types:
            params["type"] = types
        return self._paged("/v2/cases", "cases", params, "Mesh cases")

    def changed_cases(self, sort: str, case_types: Iterable[str] = ()) -> Iterator[Any]:
        """Every case (any stage) in ``sort`` order (newest change first)."""
        params: dict[str, Any] = {"sort": sort}
        types = ",".join(case_types)
        if types:
            params["type"] = types
        return self._paged("/v2/cases", "cases", params, "Mesh case changes")

    def case(self, case_id: str) -> Mapping[str, Any]:
        """One case."""
        payload = self._get(f"/v2/cases/{case_id}", f"read case {case_id}")
        inner = payload.get("case")
        return inner if isinstance(inner, Mapping) else payload

    def alerts(self, case_id: str) -> list[Any]:
        """The alerts of a case."""
        path = f"/v2/cases/{case_id}/alerts"
        return list(self._paged(path, "alerts", {}, f"alerts of case {case_id}"))

    # -- writes ---------------------------------------------------------------------------
    def transition_alert(self, alert_id: str, state: str) -> None:
        """Move an alert to ``state`` (an end state)."""
        fetch_json(
            self.transport,
            "POST",
            f"/v2/alerts/{alert_id}/transition",
            json={"state": state},
            operation=f"move alert {alert_id} to {state}",
        )

    def transition_case(self, case_id: str, stage_id: str, note: str) -> None:
        """Move a case to stage ``stage_id`` with ``note``."""
        fetch_json(
            self.transport,
            "POST",
            f"/v2/cases/{case_id}/transition",
            json={"stage_identifier": stage_id, "note": note},
            operation=f"move case {case_id} to stage {stage_id}",
        )
