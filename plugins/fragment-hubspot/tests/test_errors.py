"""429s waited out, check() messages, malformed items skipped."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fragment_hubspot import HubSpotConnector
from fragment_hubspot.testing import ACCOUNT_PATH, SEARCH_PATH, FakeHubSpot

from fragment_core.errors import AuthenticationError, ConfigurationError


@pytest.mark.parametrize("policy", ["SECONDLY", "TEN_SECONDLY_ROLLING"])
def test_a_hubspot_429_is_waited_out_not_failed_on(hubspot: FakeHubSpot, policy: str) -> None:
    hubspot.add_tasks(250)
    connector = HubSpotConnector(hubspot.config(portal_id=1, app_host="app.hubspot.com"))
    hubspot.rate_limit_next(2, policy=policy, wait=1)

    started = time.monotonic()
    records = list(connector.fetch_backlog())

    assert len(records) == 250
    assert time.monotonic() - started >= 2 * 1.0 - 0.05  # Retry-After honoured twice
    assert len(hubspot.api.requests_to("POST", SEARCH_PATH)) == 2 + 2


def test_a_429_on_write_back_is_waited_out(hubspot: FakeHubSpot) -> None:
    (task_id,) = hubspot.add_tasks(1)
    connector = HubSpotConnector(hubspot.config())
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    from fragment_core.testing.contract import completion_for

    hubspot.rate_limit_next(1, wait=1)
    connector.on_complete(*completion_for(connector, task))
    assert hubspot.completions(task_id) == 1


def test_malformed_item_is_reported_and_the_others_map(
    hubspot: FakeHubSpot, fragment_runner: Any
) -> None:
    # to_task names only the field: the engine names the source and the record
    good = hubspot.add_tasks(3)
    bad = hubspot.add_task(hs_timestamp="soon-ish")
    options = {"access_token": hubspot.token, "base_url": hubspot.api.base_url}
    report = fragment_runner("hubspot", options, source="crm").sync()
    assert report.created == len(good)
    (error,) = report.record_errors
    assert error.record_id == bad and error.field == "hs_timestamp"
    assert "crm" in str(error) and "soon-ish" in str(error)


def test_check_names_a_rejected_token(hubspot: FakeHubSpot) -> None:
    connector = HubSpotConnector(hubspot.config(access_token="pat-na1-expired"))
    with pytest.raises(AuthenticationError) as info:
        connector.check()
    assert "HubSpot rejected the access token" in str(info.value)
    assert "pat-na1-expired" not in str(info.value)


def test_check_names_the_missing_scope() -> None:
    fake = FakeHubSpot(scopes=frozenset({"oauth"}))
    with fake.api:
        connector = HubSpotConnector(fake.config())
        with pytest.raises(AuthenticationError) as info:
            connector.check()
    assert "lacks the scope crm.objects.contacts.read" in str(info.value)


def test_check_without_account_info_scope_suggests_portal_id() -> None:
    fake = FakeHubSpot(scopes=frozenset({"crm.objects.contacts.read"}))
    fake.add_tasks(2)
    with fake.api:
        with pytest.raises(AuthenticationError, match=r"lacks the scope oauth.*set portal_id"):
            HubSpotConnector(fake.config()).check()
        fake.api.reset()
        connector = HubSpotConnector(fake.config(portal_id=99, app_host="app-eu1.hubspot.com"))
        summary = connector.check()  # the portal id cannot be verified: trusted
        assert fake.api.requests_to("GET", ACCOUNT_PATH)  # tried; 403 without oauth
        fake.api.reset()
        assert len(list(connector.fetch_backlog())) == 2
        assert not fake.api.requests_to("GET", ACCOUNT_PATH)  # sync needs no account-info
    assert summary == "HubSpot account 99 (app-eu1.hubspot.com): 2 open tasks match"


def test_check_names_a_portal_id_of_another_account(hubspot: FakeHubSpot) -> None:
    connector = HubSpotConnector(hubspot.config(portal_id=1111, app_host="app.hubspot.com"))
    with pytest.raises(ConfigurationError) as info:
        connector.check()
    assert "portal_id is 1111 but the access token belongs to HubSpot account 4242" in str(
        info.value
    )
    right = HubSpotConnector(hubspot.config(portal_id=4242, app_host="app.hubspot.com"))
    assert right.check().startswith("HubSpot account 4242")


def test_check_reports_the_account_from_account_info(hubspot: FakeHubSpot) -> None:
    hubspot.ui_domain = "app-eu1.hubspot.com"
    hubspot.add_tasks(3)
    connector = HubSpotConnector(hubspot.config())
    assert connector.check() == "HubSpot account 4242 (app-eu1.hubspot.com): 3 open tasks match"
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    assert task.fields.url == (
        f"https://app-eu1.hubspot.com/contacts/4242/record/0-27/{task.external_id}"
    )


def test_429_without_retry_after_waits_by_policy_and_daily_stops() -> None:
    import httpx
    from fragment_hubspot.client import hubspot_error

    from fragment_core.errors import FragmentError, RateLimitedError

    body = b'{"status":"error","message":"You have reached your secondly limit.",'
    answer = httpx.Response(429, content=body + b'"policyName":"SECONDLY"}')
    secondly = hubspot_error(answer, "search tasks")
    assert isinstance(secondly, RateLimitedError) and secondly.retry_after == 1.0
    daily = hubspot_error(httpx.Response(429, content=body + b'"policyName":"DAILY"}'), "x")
    assert type(daily) is FragmentError and "daily API limit" in str(daily)
