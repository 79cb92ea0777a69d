"""Mesh's bearer token: fetched once, renewed before it expires, and once on a 401."""

from __future__ import annotations

import logging
import time

import pytest
from fragment_complyadvantage import MeshConnector
from fragment_complyadvantage.testing import FakeMesh

from fragment_core.errors import AuthenticationError


def _pages(mesh: FakeMesh) -> list[str]:
    return [r.query["page_number"] for r in mesh.api.requests_to("GET", "/v2/cases")]


def test_the_token_is_fetched_once_and_reused(mesh: FakeMesh) -> None:
    mesh.add_cases(250)
    connector = MeshConnector(mesh.config(), source="cases")
    assert len(list(connector.fetch_backlog())) == 250
    assert len(list(connector.fetch_backlog())) == 250
    (token,) = mesh.api.requests_to("POST", "/v2/token")
    assert token.json() == {
        "username": mesh.username,
        "password": mesh.password,
        "realm": mesh.realm,
    }
    assert mesh.tokens_issued == 1


def test_a_token_about_to_expire_is_renewed_before_it_is_refused() -> None:
    fake = FakeMesh(token_lifetime=1.0)
    fake.add_cases(30)
    with fake.api:
        connector = MeshConnector(fake.config(token_refresh_margin=0.6, page_size=10))
        assert len(list(connector.fetch_backlog())) == 30
        time.sleep(0.5)  # 0.5 s of the token's life left: still valid, but within the margin
        assert len(list(connector.fetch_backlog())) == 30
    assert fake.tokens_issued == 2
    # renewed ahead: no request was refused and sent again
    assert _pages(fake) == ["1", "2", "3"] * 2
    assert not fake.invalid_requests


def test_a_401_in_the_middle_of_a_fetch_renews_once_and_the_fetch_completes(
    mesh: FakeMesh,
) -> None:
    wanted = mesh.add_cases(250)
    connector = MeshConnector(mesh.config(), source="cases")
    records = connector.fetch_backlog()
    seen = [next(records)["identifier"]]  # page 1 fetched with the first token
    mesh.revoke_tokens()  # page 2 is refused: 401
    seen += [r["identifier"] for r in records]

    assert sorted(seen) == sorted(wanted) and len(seen) == len(set(seen))
    assert mesh.tokens_issued == 2  # renewed once
    assert _pages(mesh) == ["1", "2", "2", "3"]  # the refused page sent again, once


def test_credentials_refused_mid_fetch_fail_the_fetch_without_the_secret(
    mesh: FakeMesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mesh.add_cases(150)
    connector = MeshConnector(mesh.config(), source="cases")
    records = connector.fetch_backlog()
    next(records)
    issued = list(mesh.tokens)
    password = mesh.password
    mesh.password = "rotated-by-an-admin"
    mesh.revoke_tokens()
    with pytest.raises(AuthenticationError) as info:
        list(records)
    text = str(info.value)
    assert "Mesh refused to sign in user 'api-user@example.com' in realm 'acme'" in text
    assert "source 'cases'" in text
    assert password not in text and password not in caplog.text
    assert not any(token in caplog.text or token in text for token in issued)
    assert _pages(mesh) == ["1", "2"]  # one refusal, one renewal attempt, no loop
