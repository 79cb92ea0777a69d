"""The ``complyadvantage-mesh`` connector: stages from workflows, mapping, write-back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from fragment_complyadvantage import MeshConnector
from fragment_complyadvantage.testing import FakeMesh

from fragment_core.connector import Capability
from fragment_core.errors import ConfigurationError, WriteBackError
from fragment_core.task import TaskStatus
from fragment_core.testing.contract import completion_for


def test_backlog_is_every_case_in_a_non_decision_stage(mesh: FakeMesh) -> None:
    wanted = mesh.add_cases(130) + mesh.add_cases(20, stage="Escalated")
    wanted += mesh.add_cases(5, stage="In review", type="CUSTOMER_MONITORING")
    mesh.add_cases(8, stage="Approved")
    mesh.add_cases(2, stage="Rejected", type="CUSTOMER_MONITORING")
    connector = MeshConnector(mesh.config(), source="cases")

    ids = [r["identifier"] for r in connector.fetch_backlog()]

    assert sorted(ids) == sorted(wanted)
    pages = mesh.api.requests_to("GET", "/v2/cases")
    assert [r.query["page_number"] for r in pages] == ["1", "2"]
    assert {r.query["page_size"] for r in pages} == {"100"}
    stages = set(pages[0].query["stage.identifier"].split(","))
    non_decision = {
        s["identifier"]
        for w in mesh.workflows
        for s in w["stages"]
        if s["stage_type"] != "DECISION"
    }
    assert stages == non_decision and "state" not in pages[0].query  # state is deprecated
    assert len(mesh.api.requests_to("GET", "/v2/cases/workflows")) == 1


def test_case_types_narrow_the_backlog(mesh: FakeMesh) -> None:
    mesh.add_cases(3)
    monitoring = mesh.add_cases(2, type="CUSTOMER_MONITORING")
    connector = MeshConnector(mesh.config(case_types=["customer_monitoring"]))
    assert sorted(r["identifier"] for r in connector.fetch_backlog()) == sorted(monitoring)
    (request,) = mesh.api.requests_to("GET", "/v2/cases")
    assert request.query["type"] == "CUSTOMER_MONITORING"
    with pytest.raises(ConfigurationError, match="no stage that is not a decision"):
        list(MeshConnector(mesh.config(case_types=["PAYMENT_SCREENING"])).fetch_backlog())


def test_mapping_of_every_documented_field(mesh: FakeMesh) -> None:
    case_id = mesh.add_case(
        stage="In review",
        alerts=2,
        created_at="2025-05-02T09:15:00Z",
        updated_at="2025-05-02T09:20:00Z",
    )
    mesh.cases[case_id]["stage"].pop("name")  # the stage's name comes from the workflows
    connector = MeshConnector(
        mesh.config(case_url_template="https://eu.mesh.complyadvantage.com/cases/{case_id}"),
        source="cases",
    )
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    customer = mesh.cases[case_id]["customer"]
    assert task.external_id == case_id
    assert task.fields.title == f"{customer['name']}: customer onboarding"
    assert task.fields.url == f"https://eu.mesh.complyadvantage.com/cases/{case_id}"
    assert task.fields.custom == {
        "type": "CUSTOMER_ONBOARDING",
        "stage": "In review",
        "risk_level": "MEDIUM",
        "review_items": 2,
        "customer_external_id": customer["external_identifier"],
    }
    assert task.external_status == TaskStatus.STARTED
    assert task.external_updated_at == datetime(2025, 5, 2, 9, 20, tzinfo=UTC)


def test_write_back_moves_open_alerts_then_the_case_to_the_decision_stage(
    mesh: FakeMesh,
) -> None:
    case_id = mesh.add_case(alerts=3)
    first, *_ = mesh.alerts_of(case_id)
    first["state"] = "NEGATIVE_END_STATE"  # already closed by someone: left as it is
    connector = MeshConnector(
        mesh.config(decision_stage="approved", alert_end_state="POSITIVE_END_STATE"), source="c"
    )
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    mesh.api.requests.clear()

    said = connector.on_complete(*completion_for(connector, task))

    assert said == f"Mesh case {case_id}: 2 alerts to POSITIVE_END_STATE, case to Approved"
    moves = [(r.method, r.path) for r in mesh.api.requests if r.method == "POST"]
    alert_moves = [p for m, p in moves if p.startswith("/v2/alerts/")]
    assert len(alert_moves) == 2 and first["identifier"] not in "".join(alert_moves)
    assert moves[-1] == ("POST", f"/v2/cases/{case_id}/transition")  # the case last
    assert {a["state"] for a in mesh.alerts_of(case_id)} == {
        "POSITIVE_END_STATE",
        "NEGATIVE_END_STATE",
    }
    body = mesh.api.requests_to("POST", f"/v2/cases/{case_id}/transition")[0].json()
    assert body["stage_identifier"] == mesh.stage("Approved")["identifier"]
    assert body["note"] == "Resolved in Fragment."
    assert mesh.cases[case_id]["stage"]["name"] == "Approved"


def test_a_retried_write_back_finishes_what_a_crash_left(mesh: FakeMesh) -> None:
    case_id = mesh.add_case(alerts=2)
    connector = MeshConnector(mesh.config(), source="c")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    remote, completion = completion_for(connector, task)
    # the alerts were moved, then the process died before the case was
    for alert in mesh.alerts_of(case_id):
        alert["state"] = "POSITIVE_END_STATE"
    assert "0 alerts" in str(connector.on_complete(remote, completion))
    assert mesh.decisions(case_id) == 1
    # and once the case is decided, a retry is done at once
    assert "already decided (Approved)" in str(connector.on_complete(remote, completion))
    assert mesh.decisions(case_id) == 1


def test_a_case_decided_in_mesh_meanwhile_is_left_alone(mesh: FakeMesh) -> None:
    case_id = mesh.add_case(alerts=0)
    connector = MeshConnector(mesh.config(), source="c")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    remote, completion = completion_for(connector, task)
    mesh.move(case_id, "Rejected")
    assert "already decided (Rejected)" in str(connector.on_complete(remote, completion))
    assert mesh.decisions(case_id) == 0


def test_without_a_decision_stage_there_is_no_write_back(mesh: FakeMesh) -> None:
    mesh.add_cases(1)
    connector = MeshConnector(mesh.config(decision_stage=None), source="c")
    assert Capability.WRITE_BACK not in connector.capabilities()
    assert "set decision_stage: one of Approved, Rejected" in connector.check()
    unknown = MeshConnector(mesh.config(decision_stage="Closed"), source="c")
    with pytest.raises(ConfigurationError, match=r"'Closed' is no DECISION stage.*Approved"):
        unknown.check()


@pytest.mark.parametrize("hostile", ["..", "a/../b", "a?x=y", "a b", "a%2Fb", ""])
def test_no_id_changes_a_write_back_path(mesh: FakeMesh, hostile: str) -> None:
    from fragment_core.task import Task

    connector = MeshConnector(mesh.config(), source="c")
    task = Task.new(external_id=hostile or "x", title="t")
    remote, completion = completion_for(connector, task)
    if not hostile:
        completion = completion.__class__(**{**completion.__dict__, "external_id": ""})
    with pytest.raises(WriteBackError, match="is not a Mesh case identifier"):
        connector.on_complete(remote, completion)
    assert mesh.api.requests == []


def test_the_operators_outcome_chooses_the_decision_and_the_alerts_end_state(
    mesh: FakeMesh,
) -> None:
    approve, reject, plain, odd = mesh.add_cases(4, alerts=1)
    config = mesh.config(
        outcomes={
            "approve": {"decision_stage": "Approved"},
            "reject": {"decision_stage": "Rejected", "alert_end_state": "NEGATIVE_END_STATE"},
        }
    )
    connector = MeshConnector(config, source="c")
    assert "move cases to 'Approved' or 'Rejected'" in connector.check()
    tasks = {t.external_id: t for t in map(connector.to_task, connector.fetch_backlog())}

    def complete(case_id: str, **outcome: str) -> str | None:
        remote, completion = completion_for(connector, tasks[case_id])
        return connector.on_complete(remote, replace(completion, outcome=outcome))

    complete(approve, outcome="approve")
    complete(reject, outcome="reject")
    complete(plain)  # no outcome: decision_stage and alert_end_state
    with pytest.raises(WriteBackError, match=r"outcome is 'maybe', which is not in outcomes"):
        complete(odd, outcome="maybe")

    assert mesh.cases[approve]["stage"]["name"] == "Approved"
    assert mesh.cases[reject]["stage"]["name"] == "Rejected"
    assert mesh.cases[plain]["stage"]["name"] == "Approved"
    assert [a["state"] for a in mesh.alerts_of(reject)] == ["NEGATIVE_END_STATE"]
    assert [a["state"] for a in mesh.alerts_of(approve)] == ["POSITIVE_END_STATE"]
    assert mesh.decisions(odd) == 0 and [a["state"] for a in mesh.alerts_of(odd)] == ["OPEN"]
    bad = MeshConnector(mesh.config(outcomes={"x": {"decision_stage": "Closed"}}), source="c")
    with pytest.raises(ConfigurationError, match=r"outcomes.x.decision_stage 'Closed'"):
        bad.check()


def test_an_alert_identifier_unfit_for_a_path_stops_the_write_back(mesh: FakeMesh) -> None:
    case_id = mesh.add_case(alerts=1)
    (alert,) = mesh.alerts_of(case_id)
    alert["identifier"] = "../../cases/other/transition"
    connector = MeshConnector(mesh.config(), source="c")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    with pytest.raises(WriteBackError, match="not an identifier"):
        connector.on_complete(*completion_for(connector, task))
    assert not [r for r in mesh.api.requests if r.method == "POST" and "transition" in r.path]


def test_config_errors_name_the_option() -> None:
    from fragment_complyadvantage import MeshConfig
    from pydantic import ValidationError

    base = {"username": "u", "password": "p", "realm": "r"}
    with pytest.raises(ValidationError, match="transition_note"):
        MeshConfig(**base, transition_note="Done by {who}")
    with pytest.raises(ValidationError, match="case_url_template"):
        MeshConfig(**base, case_url_template="https://x/{case}")
    with pytest.raises(ValidationError, match="alert_end_state"):
        MeshConfig(**base, alert_end_state="CLOSED")
