"""``RefreshingBearerAuth``: a token fetched, cached, renewed before expiry and once on 401."""

from __future__ import annotations

import itertools
import logging

import pytest

from fragment_core.errors import AuthenticationError
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.transport import RefreshingBearerAuth, Transport


class Issuer:
    """Hands out tok-1, tok-2, ...; the API accepts only the tokens listed in ``valid``."""

    def __init__(self, lifetime: float | None = 3600.0) -> None:
        self.lifetime = lifetime
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self._numbers = itertools.count(1)

    def fetch(self) -> tuple[str, float | None]:
        token = f"tok-{next(self._numbers)}-secret-value"
        self.issued.append(token)
        self.valid.add(token)
        return token, self.lifetime


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def api(issuer: Issuer):  # type: ignore[no-untyped-def]
    fake = FakeAPI("bearer")

    @fake.route("GET", "/items")
    def items(req: FakeRequest) -> object:
        header = req.headers.get("authorization", "")
        if header.removeprefix("Bearer ") not in issuer.valid:
            return FakeResponse(401, json={"message": "token expired"})
        return {"ok": True}

    with fake:
        yield fake


def test_the_token_is_fetched_once_and_reused(api: FakeAPI, issuer: Issuer) -> None:
    auth = RefreshingBearerAuth(issuer.fetch)
    with Transport(api.base_url, auth=auth) as transport:
        for _ in range(3):
            transport.get_json("/items")
    assert issuer.issued == ["tok-1-secret-value"] and auth.refreshes == 1
    assert len(api.requests) == 3


def test_a_token_about_to_expire_is_renewed_before_the_request(
    api: FakeAPI, issuer: Issuer
) -> None:
    now = [1000.0]
    auth = RefreshingBearerAuth(issuer.fetch, margin=60, clock=lambda: now[0])
    with Transport(api.base_url, auth=auth) as transport:
        transport.get_json("/items")
        now[0] += 3600 - 61  # still 61 s to go: kept
        transport.get_json("/items")
        assert auth.refreshes == 1
        now[0] += 2  # within the margin: renewed before sending, no 401 seen
        transport.get_json("/items")
    assert issuer.issued == ["tok-1-secret-value", "tok-2-secret-value"]
    assert all(r.path == "/items" for r in api.requests) and len(api.requests) == 3


def test_a_401_renews_the_token_once_and_sends_the_request_again(
    api: FakeAPI, issuer: Issuer
) -> None:
    auth = RefreshingBearerAuth(issuer.fetch)
    with Transport(api.base_url, auth=auth) as transport:
        transport.get_json("/items")
        issuer.valid.clear()  # revoked server-side
        assert transport.get_json("/items") == {"ok": True}
    assert auth.refreshes == 2 and len(api.requests) == 3


def test_a_second_401_is_the_answer_not_a_loop(api: FakeAPI, issuer: Issuer) -> None:
    def useless() -> tuple[str, float | None]:
        token, lifetime = issuer.fetch()
        issuer.valid.discard(token)
        return token, lifetime

    auth = RefreshingBearerAuth(useless)
    with Transport(api.base_url, auth=auth) as transport, pytest.raises(
        AuthenticationError
    ) as info:
        transport.get_json("/items")
    assert auth.refreshes == 2 and len(api.requests) == 2
    assert "secret-value" not in str(info.value)


def test_the_token_stays_on_its_origin_and_out_of_the_logs(
    api: FakeAPI, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = RefreshingBearerAuth(issuer.fetch, origin="http://127.0.0.1:1")
    with Transport(api.base_url, auth=RefreshingBearerAuth(issuer.fetch)) as transport:
        transport.get_json("/items")
        transport.httpx_client.headers["X-Probe"] = "1"
    assert "tok-1-secret-value" not in caplog.text
    # an auth bound to another origin never fetches nor attaches a token here
    with pytest.raises(ValueError, match="bound to"):
        Transport(api.base_url, auth=auth)
    assert auth.refreshes == 0


def test_an_endpoint_answering_no_token_is_an_authentication_error() -> None:
    auth = RefreshingBearerAuth(lambda: ("", 60.0))
    with pytest.raises(AuthenticationError, match="without a token"):
        auth.token()
