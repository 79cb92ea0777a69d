"""Rate limits, failures, one retry loop, malformed items, and what check() says."""

from __future__ import annotations

import time

import pytest
from fragment_intercom import IntercomConnector
from fragment_intercom.testing import ME_PATH, SEARCH_PATH, FakeIntercom

from fragment_core.errors import (
    AuthenticationError,
    BadRecordError,
    ConfigurationError,
    RateLimitedError,
    TransientError,
)
from fragment_core.testing.contract import completion_for


def _searches(fake: FakeIntercom) -> int:
    return len(fake.api.requests_to("POST", SEARCH_PATH))


def test_an_intercom_429_is_waited_out_until_its_reset(intercom: FakeIntercom) -> None:
    intercom.add_conversations(30)  # three pages
    connector = IntercomConnector(intercom.config(app_id="abc123de", page_size=10))
    intercom.rate_limit_next(1, wait=1)  # X-RateLimit-Reset: a unix time ~1 s ahead

    started = time.monotonic()
    records = list(connector.fetch_backlog())

    assert len(records) == 30
    assert time.monotonic() - started >= 0.9  # the reset was waited for
    assert _searches(intercom) == 3 + 1


def test_a_429_on_write_back_is_waited_out(intercom: FakeIntercom) -> None:
    (conversation_id,) = intercom.add_conversations(1)
    connector = IntercomConnector(intercom.config())
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    intercom.rate_limit_next(1, wait=1)
    connector.on_complete(*completion_for(connector, task))
    assert intercom.closes(conversation_id) == 1


def test_x_ratelimit_remaining_paces_requests_before_any_429() -> None:
    # 3 requests a second, announced in X-RateLimit-Remaining/Reset: the client holds the
    # fourth until the reset instead of tripping the limit
    fake = FakeIntercom(rate_limit_per_minute=180, rate_window=1.0)
    fake.add_conversations(5)
    with fake.api:
        connector = IntercomConnector(fake.config(page_size=1, app_id="abc123de"))
        assert len(list(connector.fetch_backlog())) == 5
        assert fake.rate_limit is not None and fake.rate_limit.over == 0  # no 429 at all
        assert connector.client.rate_limit.waits >= 1
    assert not fake.invalid_requests


def test_one_retry_loop_a_5xx_storm_fails_after_max_attempts_requests(
    intercom: FakeIntercom,
) -> None:
    intercom.add_conversations(5)
    connector = IntercomConnector(intercom.config(app_id="abc123de", max_attempts=3))
    intercom.fail_next(50, status=503, path=SEARCH_PATH)
    with pytest.raises(TransientError, match="HTTP 503"):
        list(connector.fetch_backlog())
    # the SDK's retries are off: 3 tries, not 3 x the SDK's own
    assert _searches(intercom) == 3


def test_one_retry_loop_a_429_is_one_request_per_attempt(intercom: FakeIntercom) -> None:
    intercom.add_conversations(5)
    connector = IntercomConnector(intercom.config(app_id="abc123de", max_attempts=1))
    intercom.rate_limit_next(5, wait=1)
    with pytest.raises(RateLimitedError, match="rate limit"):
        list(connector.fetch_backlog())
    assert _searches(intercom) == 1


def test_a_truncated_page_is_retried_and_a_storm_of_them_fails(intercom: FakeIntercom) -> None:
    intercom.add_conversations(30)
    config = intercom.config(app_id="abc123de", max_attempts=2, page_size=10)
    connector = IntercomConnector(config)
    intercom.fail_next(1, kind="truncate", path=SEARCH_PATH)
    assert len(list(connector.fetch_backlog())) == 30

    intercom.api.reset()
    records = connector.fetch_backlog()
    next(records)
    intercom.fail_next(10, kind="truncate", path=SEARCH_PATH)
    with pytest.raises(TransientError, match="not complete JSON"):
        list(records)


def test_a_dropped_connection_is_transient(intercom: FakeIntercom) -> None:
    connector = IntercomConnector(intercom.config(app_id="abc123de", max_attempts=1))
    intercom.fail_next(1, kind="drop", path=SEARCH_PATH)
    with pytest.raises(TransientError, match="could not reach Intercom"):
        list(connector.fetch_backlog())


def test_a_malformed_conversation_is_reported_and_the_others_map(
    intercom: FakeIntercom,
) -> None:
    good = intercom.add_conversations(3)
    bad = intercom.add_conversation(waiting_since=10**15)  # an integer, but no real time
    connector = IntercomConnector(intercom.config(), source="support")
    mapped, errors = [], []
    for record in connector.fetch_backlog():
        try:
            mapped.append(connector.to_task(record).external_id)
        except BadRecordError as exc:
            errors.append(exc)
    assert sorted(mapped) == sorted(good)
    (error,) = errors
    assert error.record_id == bad and error.field == "waiting_since"
    assert "support" in str(error)


def test_check_names_a_rejected_token_and_the_region_without_the_secret(
    intercom: FakeIntercom,
) -> None:
    secret = "dG9rOmV4cGlyZWQtdG9rZW4tOTk5"
    connector = IntercomConnector(intercom.config(access_token=secret), source="support")
    with pytest.raises(AuthenticationError) as info:
        connector.check()
    text = str(info.value)
    assert "Intercom rejected the access token" in text and "support" in text
    assert 'region = "eu"' in text  # a token of another region's workspace fails this way
    assert secret not in text


def test_check_says_the_workspace_is_in_another_region() -> None:
    from fragment_intercom.connector import _region_code

    assert [_region_code(r) for r in ("US", "Europe", "AU", "United States", "Mars")] == [
        "us", "eu", "au", "us", None,
    ]  # fmt: skip
    fake = FakeIntercom(region="EU")
    with fake.api:
        connector = IntercomConnector(fake.config(region="us"), source="support")
        with pytest.raises(ConfigurationError) as info:
            connector.check()
        text = str(info.value)
        assert 'hosted in the EU region, but this source has region = "us"' in text
        assert 'set region = "eu"' in text
        assert (
            IntercomConnector(fake.config(), source="support")
            .check()
            .startswith("Intercom workspace abc123de (EU)")
        )


@pytest.mark.parametrize(
    ("permission", "named"),
    [
        ("read_conversations", "Read conversations"),
        ("read_admins", "Read admins"),
    ],
)
def test_check_names_the_missing_permission(
    intercom: FakeIntercom, permission: str, named: str
) -> None:
    intercom.scopes.discard(permission)
    connector = IntercomConnector(intercom.config(), source="support")
    with pytest.raises(AuthenticationError) as info:
        connector.check()
    text = str(info.value)
    assert "lacks the permission" in text and f"'{named}' permission" in text
    assert intercom.token not in text


def test_write_back_names_the_missing_write_permission(intercom: FakeIntercom) -> None:
    intercom.add_conversations(1)
    intercom.scopes.discard("write_conversations")
    connector = IntercomConnector(intercom.config())
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    with pytest.raises(AuthenticationError, match="'Write conversations' permission"):
        connector.on_complete(*completion_for(connector, task))


def test_me_is_fetched_once_for_a_whole_run(intercom: FakeIntercom) -> None:
    intercom.add_conversations(320)
    connector = IntercomConnector(intercom.config(), source="support")
    tasks = [connector.to_task(r) for r in connector.fetch_backlog()]
    connector.check()
    list(connector.fetch_changes(str(intercom.now())))
    assert len(tasks) == 320
    assert len(intercom.api.requests_to("GET", ME_PATH)) == 1


def test_check_without_read_admins_passes_when_app_and_admin_are_configured(
    intercom: FakeIntercom,
) -> None:
    intercom.add_conversations(2)
    intercom.scopes.discard("read_admins")
    configured = IntercomConnector(intercom.config(app_id="abc123de", admin_id="991267"))
    assert "2 open conversations match" in configured.check()
    with pytest.raises(AuthenticationError, match="'Read admins' permission"):
        IntercomConnector(intercom.config(app_id="abc123de")).check()


def test_the_sdk_goes_through_our_origin_guard(intercom: FakeIntercom) -> None:
    # the SDK holds a placeholder token; a redirect to another origin is refused before
    # anything is sent there, so the real token never leaves Intercom's base URL
    intercom.add_conversations(1)
    connector = IntercomConnector(intercom.config(app_id="abc123de"))
    intercom.fail_next(
        1, status=302, path=SEARCH_PATH, headers={"Location": "http://127.0.0.2:9/x"}
    )
    with pytest.raises(ConfigurationError, match="redirecting to another origin") as info:
        list(connector.fetch_backlog())
    assert intercom.token not in str(info.value)
