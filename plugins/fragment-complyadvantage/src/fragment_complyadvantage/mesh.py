"""The ``complyadvantage-mesh`` connector: Mesh cases in a non-decision stage, decided back."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from fragment_complyadvantage.config import ALERT_END_STATES, MeshConfig, MeshOutcome
from fragment_complyadvantage.http import NotFoundError, newest_since
from fragment_complyadvantage.mesh_client import MeshClient
from fragment_complyadvantage.searches import parse_time, updated_at, updated_cursor
from fragment_core.connector import Capability, Completion, Connector, Record
from fragment_core.errors import BadRecordError, ConfigurationError, WriteBackError
from fragment_core.task import RemoteTask, Task, TaskStatus

DECISION = "DECISION"
#: stage_type -> the task's external status.
EXTERNAL_STATUS = {"INITIAL": TaskStatus.TODO, "REVIEW": TaskStatus.STARTED}


@dataclass(frozen=True)
class Stage:
    """One stage of a case workflow."""

    identifier: str
    name: str
    stage_type: str
    case_type: str


def is_identifier(value: str) -> bool:
    """Whether ``value`` is safe in a path: ASCII letters, digits and dashes (a UUID)."""
    return value.isascii() and value.replace("-", "").isalnum()


def stages_of(workflows: list[Mapping[str, Any]]) -> list[Stage]:
    """Every stage of every workflow."""
    found = []
    for workflow in workflows:
        case_type = str(workflow.get("case_type") or "")
        for stage in workflow.get("stages") or []:
            if isinstance(stage, Mapping) and isinstance(stage.get("identifier"), str):
                found.append(
                    Stage(
                        identifier=stage["identifier"],
                        name=str(stage.get("name") or stage["identifier"]),
                        stage_type=str(stage.get("stage_type") or "").upper(),
                        case_type=case_type,
                    )
                )
    return found


class MeshConnector(Connector[MeshConfig]):
    """ComplyAdvantage Mesh cases in any stage that is not a decision.

    Backlog: cases whose stage is INITIAL or REVIEW in its workflow (read from the
    workflows endpoint each run). Completing a task moves the case's open alerts to the
    configured end state, then the case to the configured decision stage.
    """

    name = "complyadvantage-mesh"
    id_field = "identifier"
    example_options: ClassVar[dict[str, Any]] = {
        "username": "fragment-api@example.com",
        "password": "${MESH_PASSWORD}",
        "realm": "acme",
        "base_url": "https://api.eu.mesh.complyadvantage.com",
        "case_url_template": "https://eu.mesh.complyadvantage.com/cases/{case_id}",
        "decision_stage": "Approved",
    }

    def __init__(self, config: MeshConfig, *, source: str = "") -> None:
        super().__init__(config, source=source)
        self._stages: dict[str, Stage] = {}

    def build_client(self) -> MeshClient:
        """The Mesh client (``self.client``)."""
        return MeshClient(self.config, where=self.where)

    def configured_capabilities(self) -> frozenset[Capability]:
        """Write-back only with a ``decision_stage`` or ``outcomes``; incremental only
        with an ``incremental_sort``."""
        caps = set(super().configured_capabilities())
        if not self.config.decision_stage and not self.config.outcomes:
            caps.discard(Capability.WRITE_BACK)
        if not self.config.incremental_sort:
            caps.discard(Capability.INCREMENTAL)
        return frozenset(caps)

    def stages(self, *, refresh: bool = False) -> dict[str, Stage]:
        """The workflows' stages by identifier (read once, or again with ``refresh``)."""
        if refresh or not self._stages:
            self._stages = {s.identifier: s for s in stages_of(self.client.workflows())}
        return self._stages

    # -- fetch --------------------------------------------------------------------------
    def fetch_backlog(self) -> Iterator[Record]:
        """Every case in a stage whose type is not DECISION (of ``case_types``, if set)."""
        wanted = set(self.config.case_types)
        stages = self.stages(refresh=True)
        open_ids = [
            s.identifier
            for s in stages.values()
            if s.stage_type != DECISION and (not wanted or s.case_type in wanted)
        ]
        if not open_ids:
            raise ConfigurationError(
                "the Mesh workflows list no stage that is not a decision"
                + (f" for case types {sorted(wanted)}" if wanted else "")
                + ": check case_types",
                where=self.where,
            )
        yield from self.client.cases(open_ids, self.config.case_types)

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Cases updated at or after ``cursor``, any stage (``incremental_sort`` order)."""
        if cursor is None or not self.config.incremental_sort:
            yield from self.fetch_backlog()
            return
        since = self.time_cursor(cursor)
        cases = self.client.changed_cases(self.config.incremental_sort, self.config.case_types)
        yield from newest_since(cases, since, updated_at)

    def is_open(self, record: Record) -> bool:
        """Its stage is not a DECISION (and its type one of ``case_types``)."""
        if not isinstance(record, Mapping) or not isinstance(record.get("stage"), Mapping):
            return True  # let to_task report it
        if self.config.case_types and record.get("type") not in self.config.case_types:
            return False
        stage = record["stage"]
        stage_type = stage.get("stage_type")
        if not stage_type:
            known = self._stages.get(str(stage.get("identifier")))
            if known is None:
                known = self.stages(refresh=True).get(str(stage.get("identifier")))
            stage_type = known.stage_type if known else ""
        return str(stage_type).upper() != DECISION

    def cursor_value(self, record: Record) -> str | None:
        """updated_at, normalized (UTC ISO 8601) so cursors compare as times."""
        return updated_cursor(record)

    def to_task(self, record: Record) -> Task:
        """Title from customer name and case type; url = the case in the Mesh app."""
        if not isinstance(record, Mapping):
            raise BadRecordError(
                f"expected a case object, got {type(record).__name__}",
                field="case",
                where=self.where,
            )
        case_id = record.get("identifier")
        if not isinstance(case_id, str) or not case_id:
            raise BadRecordError("case has no identifier", field="identifier", where=self.where)

        def bad(field: str, message: str) -> BadRecordError:
            return BadRecordError(message, record_id=case_id, field=field, where=self.where)

        customer = record.get("customer")
        if not isinstance(customer, Mapping):
            raise bad("customer", f"expected the case's customer, got {customer!r}")
        name = customer.get("name") or customer.get("external_identifier")
        if not isinstance(name, str) or not name.strip():
            raise bad("customer.name", f"expected the customer's name, got {name!r}")
        case_type = record.get("type")
        if not isinstance(case_type, str) or not case_type:
            raise bad("type", f"expected the case type, got {case_type!r}")
        items = record.get("review_items_count")
        if items is not None and (isinstance(items, bool) or not isinstance(items, int)):
            raise bad("review_items_count", f"expected a count, got {items!r}")
        stage = record.get("stage")
        if not isinstance(stage, Mapping) or not isinstance(stage.get("identifier"), str):
            raise bad("stage", f"expected the case's stage, got {stage!r}")
        known = self._stages.get(stage["identifier"])
        stage_name = stage.get("name") or (known.name if known else stage["identifier"])
        stage_type = str(stage.get("stage_type") or (known.stage_type if known else "")).upper()
        times = {}
        for field in ("created_at", "updated_at"):
            try:
                times[field] = parse_time(record.get(field))
            except ValueError:
                raise bad(field, f"{record.get(field)!r} is not a time") from None
        custom = {
            "type": case_type,
            "stage": stage_name,
            "risk_level": customer.get("risk_level"),
            "review_items": items,
            "customer_external_id": customer.get("external_identifier"),
        }
        return Task.new(
            external_id=case_id,
            title=f"{name.strip()}: {case_type.replace('_', ' ').lower()}",
            url=self.config.case_url_template.format(case_id=case_id),
            custom={k: v for k, v in custom.items() if v is not None},
            external_status=EXTERNAL_STATUS.get(stage_type, TaskStatus.TODO),
            external_created_at=times["created_at"],
            external_updated_at=times["updated_at"],
        )

    # -- write-back ---------------------------------------------------------------------
    def decision(self, outcome: Mapping[str, Any]) -> MeshOutcome:
        """Where the operator's outcome sends the case (``outcomes``, else the defaults)."""
        value = outcome.get(self.config.outcome_field)
        if value not in (None, "") and self.config.outcomes:
            chosen = self.config.outcomes.get(str(value))
            if chosen is None:
                raise WriteBackError(
                    f"the completion's {self.config.outcome_field} is {value!r}, which is "
                    f"not in outcomes ({', '.join(self.config.outcomes)}); nothing was sent",
                    where=self.where,
                )
            return chosen
        if not self.config.decision_stage:
            raise WriteBackError(
                "no decision_stage is configured, so a case cannot be decided",
                where=self.where,
            )
        return MeshOutcome(
            decision_stage=self.config.decision_stage,
            alert_end_state=self.config.alert_end_state,
        )

    def decision_stage_for(self, case_type: str, wanted: str) -> Stage:
        """The DECISION stage ``wanted`` (name or identifier) of ``case_type``'s workflow."""
        stages = [s for s in self.stages().values() if s.case_type == case_type] or list(
            self.stages().values()
        )
        decisions = [s for s in stages if s.stage_type == DECISION]
        for stage in decisions:
            if wanted == stage.identifier or wanted.casefold() == stage.name.casefold():
                return stage
        names = ", ".join(f"{s.name} ({s.identifier})" for s in decisions) or "none"
        raise ConfigurationError(
            f"decision_stage {wanted!r} is no DECISION stage of the {case_type or 'case'} "
            f"workflow; its decision stages: {names}",
            where=self.where,
        )

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Move the open alerts to the decision's end state, then the case to its DECISION
        stage (the decision: ``outcomes`` by the operator's outcome, else
        ``decision_stage`` and ``alert_end_state``).

        Idempotent: alerts already in an end state are left, and a case already in a
        DECISION stage is done (whoever decided it).
        """
        case_id = completion.external_id
        if not is_identifier(case_id):
            raise WriteBackError(
                f"{case_id[:80]!r} is not a Mesh case identifier; nothing sent",
                where=self.where,
            )
        decision = self.decision(completion.outcome)
        try:
            case = self.client.case(case_id)
        except NotFoundError:
            raise WriteBackError(
                f"Mesh case {case_id} no longer exists; nothing to decide", where=self.where
            ) from None
        stage = case.get("stage") if isinstance(case.get("stage"), Mapping) else {}
        current = self.stages().get(str(stage.get("identifier")))
        if current is None and stage.get("identifier"):
            current = self.stages(refresh=True).get(str(stage["identifier"]))
        if current is not None and current.stage_type == DECISION:
            return f"Mesh case {case_id} was already decided ({current.name})"
        target = self.decision_stage_for(str(case.get("type") or ""), decision.decision_stage)
        moved = 0
        for alert in self.client.alerts(case_id):
            if not isinstance(alert, Mapping) or not isinstance(alert.get("identifier"), str):
                continue
            if str(alert.get("state") or "").upper() not in ALERT_END_STATES:
                if not is_identifier(alert["identifier"]):
                    raise WriteBackError(
                        f"case {case_id} lists an alert {alert['identifier'][:80]!r} that is "
                        "not an identifier; nothing more sent",
                        where=self.where,
                    )
                self.client.transition_alert(alert["identifier"], decision.alert_end_state)
                moved += 1
        if moved and self.config.alert_transition_pause:
            time.sleep(self.config.alert_transition_pause)
        note = completion.fill(self.config.transition_note)
        self.client.transition_case(case_id, target.identifier, note)
        return f"Mesh case {case_id}: {moved} alerts to {decision.alert_end_state}, " + (
            f"case to {target.name}"
        )

    def check(self) -> str:
        """Sign in, read the workflows, and find every configured decision stage."""
        stages = self.stages(refresh=True)
        decisions = sorted({s.name for s in stages.values() if s.stage_type == DECISION})
        configured = {"decision_stage": self.config.decision_stage} | {
            f"outcomes.{key}.decision_stage": o.decision_stage
            for key, o in self.config.outcomes.items()
        }
        types = ", ".join(sorted({s.case_type for s in stages.values()}))
        for option, wanted in configured.items():
            if wanted and not any(
                wanted == s.identifier or wanted.casefold() == s.name.casefold()
                for s in stages.values()
                if s.stage_type == DECISION
            ):
                raise ConfigurationError(
                    f"{option} {wanted!r} is no DECISION stage of the Mesh workflows "
                    f"({types}); decision stages: {', '.join(decisions) or 'none'}",
                    where=self.where,
                )
        open_count = sum(1 for s in stages.values() if s.stage_type != DECISION)
        targets = sorted({str(v) for v in configured.values() if v})
        write_back = (
            f"completions move cases to {' or '.join(map(repr, targets))}"
            if targets
            else f"no write-back (set decision_stage: one of {', '.join(decisions) or 'none'})"
        )
        return (
            f"Mesh at {self.config.base_url}: signed in as {self.config.username!r}; "
            f"{open_count} open stages; {write_back}"
        )
