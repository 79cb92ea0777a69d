"""The ``complyadvantage`` connector: the listing it asks for, mapping, write-back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fragment_complyadvantage import SearchesConfig, SearchesConnector
from fragment_complyadvantage.testing import FakeComplyAdvantage
from pydantic import ValidationError

from fragment_core.connector import Completion
from fragment_core.errors import WriteBackError
from fragment_core.testing.contract import completion_for


def _one_task(ca: FakeComplyAdvantage, connector: SearchesConnector):  # type: ignore[no-untyped-def]
    return connector.to_task(next(iter(connector.fetch_backlog())))


def _with_outcome(completion: Completion, **outcome: str) -> Completion:
    return Completion(
        source=completion.source,
        external_id=completion.external_id,
        uid=completion.uid,
        done_at=completion.done_at,
        outcome=outcome,
        idempotency_key=completion.idempotency_key,
    )


def test_backlog_is_the_searches_needing_review_paged_by_page_and_per_page(
    ca: FakeComplyAdvantage,
) -> None:
    wanted = ca.add_searches(120) + ca.add_searches(30, match_status="unknown")
    ca.add_searches(10, match_status="no_match")
    ca.add_searches(5, match_status="true_positive_reject")
    connector = SearchesConnector(ca.config(), source="screening")

    ids = [str(r["id"]) for r in connector.fetch_backlog()]

    assert sorted(ids) == sorted(wanted)
    pages = ca.api.requests_to("GET", "/searches")
    assert [r.query["page"] for r in pages] == ["1", "2"]
    assert {r.query["per_page"] for r in pages} == {"100"}
    assert pages[0].query["match_status"] == "potential_match,unknown"
    assert pages[0].headers["authorization"] == "<redacted>"  # sent, and logged masked


def test_review_statuses_and_assignee_are_configurable(ca: FakeComplyAdvantage) -> None:
    mine = ca.add_search(match_status="unknown", assignee_id=7)
    ca.add_search(match_status="unknown", assignee_id=8)
    ca.add_search(match_status="potential_match", assignee_id=7)
    connector = SearchesConnector(ca.config(review_statuses=["unknown"], assignee_id=7))
    assert [str(r["id"]) for r in connector.fetch_backlog()] == [mine]
    (request,) = ca.api.requests_to("GET", "/searches")
    assert request.query["match_status"] == "unknown" and request.query["assignee_id"] == "7"
    with pytest.raises(ValidationError, match="unknown match_status"):
        SearchesConfig(api_key="k", review_statuses=["maybe"])


def test_mapping_of_every_documented_field(ca: FakeComplyAdvantage) -> None:
    search_id = ca.add_search(
        search_term="Jane Roe",
        total_hits=3,
        client_ref="cust-42",
        assignee_id=4321,
        risk_level="medium",
        created_at="2025-05-02 09:15:00",
        updated_at="2025-05-02 09:15:01",
    )
    task = _one_task(ca, SearchesConnector(ca.config(), source="screening"))
    assert task.external_id == search_id
    assert task.fields.title == "Jane Roe (3 hits)"
    assert task.fields.url == ca.searches[search_id]["share_url"]
    assert task.fields.custom == {
        "match_status": "potential_match",
        "risk_level": "medium",
        "total_hits": 3,
        "client_ref": "cust-42",
        "assignee": 4321,
    }
    assert task.external_updated_at == datetime(2025, 5, 2, 9, 15, 1, tzinfo=UTC)
    one = SearchesConnector(ca.config()).to_task({**ca.searches[search_id], "total_hits": 1})
    assert one.fields.title == "Jane Roe (1 hit)"


def test_write_back_sets_match_status_and_risk_from_the_outcome(ca: FakeComplyAdvantage) -> None:
    search_id = ca.add_search()
    connector = SearchesConnector(
        ca.config(outcome_map={"cleared": "false_positive", "confirmed": "true_positive"}),
        source="screening",
    )
    remote, completion = completion_for(connector, _one_task(ca, connector))
    said = connector.on_complete(
        remote, _with_outcome(completion, outcome="confirmed", risk_level="high")
    )
    assert said == f"search {search_id}: match_status true_positive, risk_level high"
    (patch,) = ca.api.requests_to("PATCH", f"/searches/{search_id}")
    assert patch.json() == {"match_status": "true_positive", "risk_level": "high"}
    assert ca.searches[search_id]["match_status"] == "true_positive"


def test_write_back_without_an_outcome_uses_the_configured_default(
    ca: FakeComplyAdvantage,
) -> None:
    search_id = ca.add_search()
    connector = SearchesConnector(
        ca.config(default_match_status="no_match", default_risk_level="low"), source="s"
    )
    connector.on_complete(*completion_for(connector, _one_task(ca, connector)))
    (patch,) = ca.api.requests_to("PATCH", f"/searches/{search_id}")
    assert patch.json() == {"match_status": "no_match", "risk_level": "low"}


def test_a_search_resolved_meanwhile_is_not_overwritten(ca: FakeComplyAdvantage) -> None:
    search_id = ca.add_search()
    connector = SearchesConnector(ca.config(), source="screening")
    remote, completion = completion_for(connector, _one_task(ca, connector))
    ca.resolve(search_id, "true_positive_reject")
    said = connector.on_complete(remote, completion)
    assert "already resolved (true_positive_reject)" in str(said)
    assert ca.updates(search_id) == 0


def test_an_outcome_that_is_no_decision_fails_and_sends_nothing(ca: FakeComplyAdvantage) -> None:
    search_id = ca.add_search()
    connector = SearchesConnector(ca.config(), source="screening")
    remote, completion = completion_for(connector, _one_task(ca, connector))
    with pytest.raises(WriteBackError, match=r"outcome is 'looks fine'.*outcome_map"):
        connector.on_complete(remote, _with_outcome(completion, outcome="looks fine"))
    with pytest.raises(WriteBackError, match="risk_level is 'severe'"):
        connector.on_complete(remote, _with_outcome(completion, risk_level="severe"))
    assert ca.updates(search_id) == 0


@pytest.mark.parametrize("hostile", ["..", "1/../2", "1?x=y", "abc", "12%2F3"])
def test_no_id_changes_a_write_back_path(ca: FakeComplyAdvantage, hostile: str) -> None:
    from fragment_core.task import Task

    connector = SearchesConnector(ca.config(), source="screening")
    with pytest.raises(WriteBackError, match="is not a search id"):
        connector.on_complete(*completion_for(connector, Task.new(external_id=hostile, title="t")))
    assert ca.api.requests == []


def test_write_back_of_a_deleted_search_is_a_clear_error(ca: FakeComplyAdvantage) -> None:
    search_id = ca.add_search()
    connector = SearchesConnector(ca.config(), source="screening")
    task = _one_task(ca, connector)
    del ca.searches[search_id]
    with pytest.raises(WriteBackError, match=f"search {search_id} no longer exists"):
        connector.on_complete(*completion_for(connector, task))
