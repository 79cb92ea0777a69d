"""check() says what is wrong (key, credentials, permission, region) with no secret;
the accounts' limits are respected from the Ratelimit-* headers."""

from __future__ import annotations

import time

import pytest
from fragment_complyadvantage import MeshConnector, SearchesConnector
from fragment_complyadvantage.testing import FakeComplyAdvantage, FakeMesh

from fragment_core.errors import AuthenticationError


def test_searches_check_reports_the_listing(ca: FakeComplyAdvantage) -> None:
    ca.add_searches(3)
    summary = SearchesConnector(ca.config(), source="s").check()
    assert summary == (
        f"ComplyAdvantage at {ca.api.base_url}: the search listing (potential_match/unknown) "
        "reached"
    )


def test_searches_check_names_a_rejected_key_and_the_region(ca: FakeComplyAdvantage) -> None:
    connector = SearchesConnector(ca.config(api_key="ca-key-from-another-region"), source="s")
    with pytest.raises(AuthenticationError) as info:
        connector.check()
    text = str(info.value)
    assert "ComplyAdvantage rejected the API key" in text and "Invalid API key" in text
    assert "base_url is the API host of your account's region" in text
    assert "ca-key-from-another-region" not in text and "source 's'" in text


def test_searches_check_names_a_missing_permission() -> None:
    fake = FakeComplyAdvantage(scopes=frozenset())
    with fake.api, pytest.raises(AuthenticationError) as info:
        SearchesConnector(fake.config(), source="s").check()
    assert "may not GET /searches (HTTP 403)" in str(info.value)
    assert "permission to view and update searches" in str(info.value)


def test_mesh_check_signs_in_and_lists_the_open_stages(mesh: FakeMesh) -> None:
    summary = MeshConnector(mesh.config(), source="m").check()
    assert summary == (
        f"Mesh at {mesh.api.base_url}: signed in as 'api-user@example.com'; 6 open stages; "
        "completions move cases to 'Approved'"
    )


def test_mesh_check_in_the_wrong_region_says_so_without_the_password() -> None:
    us, eu = FakeMesh(region="us"), FakeMesh(region="eu", password="eu-only-password-42")
    with us.api, eu.api:
        assert MeshConnector(eu.config(), source="m").check()
        wrong = MeshConnector(eu.config(base_url=us.api.base_url), source="m")
        with pytest.raises(AuthenticationError) as info:
            wrong.check()
    text = str(info.value)
    assert "Mesh refused to sign in user 'api-user@example.com' in realm 'acme'" in text
    assert "Invalid username or password" in text and "your account's region" in text
    assert "eu-only-password-42" not in text


def test_mesh_check_names_a_missing_permission() -> None:
    fake = FakeMesh(scopes=frozenset({"Review cases"}))
    with fake.api, pytest.raises(AuthenticationError) as info:
        MeshConnector(fake.config(), source="m").check()
    assert "lacks the permission for GET /v2/cases/workflows (HTTP 403)" in str(info.value)
    assert "View cases" in str(info.value)


def test_mesh_limit_is_never_tripped_thanks_to_ratelimit_headers() -> None:
    fake = FakeMesh(rate_limit_per_second=5)
    fake.add_cases(40)
    with fake.api:
        connector = MeshConnector(fake.config(page_size=4), source="m")
        started = time.monotonic()
        assert len(list(connector.fetch_backlog())) == 40
        elapsed = time.monotonic() - started
        gate = connector.client.gate
    assert fake.over_limit == 0  # 12 requests at 5 a second: held back, never refused
    assert gate.waits >= 2 and elapsed >= 1.5
    assert not fake.invalid_requests


def test_searches_limit_is_never_tripped_thanks_to_ratelimit_headers() -> None:
    fake = FakeComplyAdvantage(rate_limit_per_second=4)
    fake.add_searches(30)
    with fake.api:
        connector = SearchesConnector(fake.config(per_page=3), source="s")
        assert len(list(connector.fetch_backlog())) == 30
        assert connector.client.gate.waits >= 2
    assert fake.over_limit == 0
