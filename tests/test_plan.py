"""The planner is a pure function: records + state -> plan. Unit cases and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fragment_core.config import ClosePolicy
from fragment_core.reports import RecordError
from fragment_core.sync.plan import (
    MappedRecord,
    PlanPolicy,
    max_cursor,
    plan_sync,
)
from fragment_core.task import Task, task_uid

SOURCE = "s"


def rec(eid: str, title: str = "t", cursor: str | None = None, open: bool = True) -> MappedRecord:
    task = Task.new(external_id=eid, title=title).for_source(SOURCE)
    return MappedRecord(eid, task, task.content_hash(), cursor=cursor, open=open)


def h(eid: str, title: str = "t") -> str:
    return Task.new(external_id=eid, title=title).for_source(SOURCE).content_hash()


def known(*rows: tuple[str, str, str, int]) -> dict[str, tuple[str, str, int]]:
    return {eid: (hsh, status, missing) for eid, hsh, status, missing in rows}


def test_create_update_unchanged() -> None:
    state = known(("a", h("a"), "open", 0), ("b", h("b"), "open", 0))
    plan = plan_sync(SOURCE, [rec("a"), rec("b", "new title"), rec("c")], state)
    assert [w.external_id for w in plan.create] == ["c"]
    assert [w.external_id for w in plan.update] == ["b"]
    assert plan.unchanged == 1 and plan.close == [] and plan.fetched == 3
    assert plan.create[0].uid == str(task_uid(SOURCE, "c"))


def test_absent_record_closes_after_complete_fetch_only() -> None:
    state = known(("a", h("a"), "open", 0), ("b", h("b"), "open", 0))
    plan = plan_sync(SOURCE, [rec("a")], state)
    assert [c.external_id for c in plan.close] == ["b"]
    incomplete = plan_sync(SOURCE, [rec("a")], state, complete=False)
    assert incomplete.close == [] and "did not complete" in incomplete.messages[0]
    late = plan_sync(SOURCE, iter([rec("a")]), state, complete=lambda: False)
    assert late.close == [] and late.complete is False


def test_blast_radius_cap_and_force() -> None:
    state = known(*[(str(i), h(str(i)), "open", 0) for i in range(20)])
    backlog = [rec(str(i)) for i in range(9)]  # 11 of 20 would close: 55%
    plan = plan_sync(SOURCE, backlog, state)
    assert plan.capped and plan.close == [] and plan.withheld_closes == 11
    assert "blast-radius cap" in plan.messages[0] and "--force-close" in plan.messages[0]
    forced = plan_sync(SOURCE, backlog, state, policy=PlanPolicy(force_close=True))
    assert len(forced.close) == 11 and not forced.capped
    fine = plan_sync(SOURCE, [rec(str(i)) for i in range(11)], state)  # 9 of 20: 45%
    assert len(fine.close) == 9 and not fine.capped


def test_cap_does_not_apply_to_small_sources() -> None:
    state = known(*[(str(i), h(str(i)), "open", 0) for i in range(10)])
    assert len(plan_sync(SOURCE, [], state).close) == 10
    custom = PlanPolicy(close=ClosePolicy(max_share=0.5, min_open=3))
    assert plan_sync(SOURCE, [], state, policy=custom).capped


def test_debounce_waits_k_complete_runs() -> None:
    policy = PlanPolicy(close=ClosePolicy(debounce=3))
    state = known(("a", h("a"), "open", 0), ("b", h("b"), "open", 1))
    plan = plan_sync(SOURCE, [], state, policy=policy)
    assert plan.close == [] and plan.missing == {"a": 1, "b": 2}
    state = known(("a", h("a"), "open", 2), ("b", h("b"), "open", 2))
    plan = plan_sync(SOURCE, [rec("b")], state, policy=policy)
    assert [c.external_id for c in plan.close] == ["a"] and plan.missing == {"b": 0}


def test_bad_record_counts_as_seen() -> None:
    error = RecordError(SOURCE, "a", "title", "empty")
    state = known(("a", h("a"), "open", 0), ("b", h("b"), "open", 0))
    plan = plan_sync(SOURCE, [MappedRecord("a", error=error), rec("b")], state)
    assert plan.close == [] and plan.record_errors == [error]
    no_id = MappedRecord(None, error=RecordError(SOURCE, None, "id", "empty"))
    plan = plan_sync(SOURCE, [no_id, rec("b")], state)
    # a record whose id cannot be read may be "a": closing "a" is withheld
    assert plan.close == [] and plan.withheld_closes == 1 and len(plan.record_errors) == 1
    assert "without a readable id" in plan.messages[0]


def test_dropped_record_is_absent() -> None:
    state = known(("a", h("a"), "open", 0))
    plan = plan_sync(SOURCE, [MappedRecord("a", dropped=True)], state)
    assert plan.dropped == 1 and [c.external_id for c in plan.close] == ["a"]


def test_no_resurrection_and_reopen_policy() -> None:
    state = known(("a", h("a"), "done", 0))
    assert plan_sync(SOURCE, [rec("a")], state).unchanged == 1
    changed = plan_sync(SOURCE, [rec("a", "edited")], state)
    assert [w.external_id for w in changed.reopen] == ["a"]
    never = plan_sync(SOURCE, [rec("a", "edited")], state, policy=PlanPolicy(reopen="never"))
    assert never.reopen == [] and never.unchanged == 1
    adopted = known(("a", "", "done", 0))  # completion seen before the hash was committed
    assert plan_sync(SOURCE, [rec("a", "edited")], adopted).reopen == []


def test_sync_closed_record_that_returns_is_reopened() -> None:
    state = known(("a", h("a"), "closed", 0), ("b", h("b"), "closing", 0))
    plan = plan_sync(SOURCE, [rec("a"), rec("b")], state)
    assert sorted(w.external_id for w in plan.reopen) == ["a", "b"]


def test_closing_intent_is_finished_even_when_capped() -> None:
    state = known(("x", h("x"), "closing", 0), *[(str(i), h(str(i)), "open", 0) for i in range(20)])
    plan = plan_sync(SOURCE, [], state)
    assert plan.capped and [c.external_id for c in plan.close] == ["x"]


def test_duplicate_ids_keep_the_first() -> None:
    plan = plan_sync(SOURCE, [rec("a"), rec("a", "other")], {})
    assert len(plan.create) == 1 and plan.create[0].task.fields.title == "t"
    assert "duplicate" in plan.record_errors[0].message


def test_incremental_closes_only_explicitly_and_moves_the_cursor() -> None:
    state = known(("a", h("a"), "open", 0), ("b", h("b"), "open", 0))
    changes = [rec("c", cursor="9"), MappedRecord("a", open=False, cursor="10")]
    plan = plan_sync(SOURCE, changes, state, mode="incremental", previous_cursor="8")
    assert [c.external_id for c in plan.close] == ["a"]
    assert [w.external_id for w in plan.create] == ["c"]
    assert plan.next_cursor == "10"
    failed = plan_sync(SOURCE, changes, state, mode="incremental", complete=False)
    assert failed.next_cursor is None


def test_cursor_order() -> None:
    assert max_cursor("9", "10") == "10"
    assert max_cursor("2025-01-02T00:00:00Z", "2025-01-01T00:00:00Z") == "2025-01-02T00:00:00Z"
    assert max_cursor(None, "1") == "1" and max_cursor("1", None) == "1"


backlogs = st.lists(
    st.dictionaries(st.sampled_from("abcdefghijklmnop"), st.sampled_from("xyz"), max_size=16),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(backlogs, st.data())
def test_property_any_sequence_keeps_the_invariants(steps: list[dict[str, str]], data) -> None:  # noqa: C901
    """Simulated apply: state follows each plan; the invariants hold after every step."""
    state: dict[str, tuple[str, str, int]] = {}
    for backlog in steps:
        complete = data.draw(st.booleans().map(lambda b: b or len(steps) < 2), label="complete")
        operator_done = data.draw(st.sets(st.sampled_from(sorted(state) or ["-"])), label="done")
        for eid in operator_done:
            if eid in state and state[eid][1] == "open":
                state[eid] = (state[eid][0], "done", 0)
        before = dict(state)
        mapped = [rec(eid, title) for eid, title in backlog.items()]
        plan = plan_sync(SOURCE, mapped, state, complete=complete)
        closed = {c.external_id for c in plan.close}
        written = {w.external_id for w in plan.writes}
        # identity: at most one write per record; closes never for seen records
        assert len(written) == len(plan.writes)
        assert not closed & set(backlog)
        # safe closing: nothing closes after an incomplete fetch
        if not complete:
            assert not closed
        # change detection: an unchanged open record is never written
        for eid, title in backlog.items():
            if eid in before and before[eid][1] == "open" and before[eid][0] == h(eid, title):
                assert eid not in written
        # no resurrection: an operator-done record is written only if it changed
        for eid in written:
            if eid in before and before[eid][1] == "done":
                assert before[eid][0] != h(eid, backlog[eid])
        # cap: never more than the share of open tasks when above min_open
        open_before = sum(1 for v in before.values() if v[1] == "open")
        if open_before > 10:
            assert len(closed) <= 0.5 * open_before
        # simulated apply
        for w in plan.writes:
            state[w.external_id] = (w.content_hash, "open", 0)
        for eid in closed:
            state[eid] = (state[eid][0], "closed", 0)
        for eid, n in plan.missing.items():
            if eid in state:
                state[eid] = (state[eid][0], state[eid][1], n)
        # convergence: after a complete uncapped run every backlog record is known
        if complete:
            for eid in backlog:
                assert eid in state
            if not plan.capped:
                for eid, (_, status, _) in state.items():
                    if eid not in backlog:
                        assert status != "open"


def test_incremental_explicit_closes_count_against_the_cap() -> None:
    state = known(*[(str(i), h(str(i)), "open", 0) for i in range(20)])
    gone = [rec(str(i), open=False, cursor=str(i)) for i in range(12)]  # 12 of 20: 60%
    plan = plan_sync(SOURCE, gone, state, mode="incremental", previous_cursor="0")
    assert plan.capped and plan.close == [] and plan.withheld_closes == 12
    assert "blast-radius cap: 12 of 20 open tasks of source 's' would close" in plan.messages[0]
    assert plan.next_cursor == "0"  # kept: the changes are fetched again, nothing lost
    forced = plan_sync(
        SOURCE, gone, state, mode="incremental", policy=PlanPolicy(force_close=True)
    )
    assert len(forced.close) == 12 and not forced.capped and forced.next_cursor == "11"


def test_exactly_max_share_is_capped() -> None:
    state = known(*[(str(i), h(str(i)), "open", 0) for i in range(20)])
    plan = plan_sync(SOURCE, [rec(str(i)) for i in range(10)], state)  # 10 of 20: 50%
    assert plan.capped and plan.close == [] and plan.withheld_closes == 10
    gone = [rec(str(i), open=False) for i in range(10)]
    assert plan_sync(SOURCE, gone, state, mode="incremental").capped


def test_recent_closes_of_the_window_count_with_this_runs() -> None:
    # 60 open now, 40 closed by earlier runs of the window: 40 + 10 of 100 is 50%
    state = known(*[(str(i), h(str(i)), "open", 0) for i in range(60)])
    backlog = [rec(str(i)) for i in range(50)]
    alone = plan_sync(SOURCE, backlog, state)
    assert len(alone.close) == 10 and not alone.capped  # 10 of 60 on its own
    policy = PlanPolicy(recent_closes=40)
    plan = plan_sync(SOURCE, backlog, state, policy=policy)
    assert plan.capped and plan.close == [] and plan.withheld_closes == 10
    assert "50 of 100 open tasks of source 's' would close in the last 24h (40 net closed" in (
        plan.messages[0]
    )
    fewer = plan_sync(SOURCE, [rec(str(i)) for i in range(51)], state, policy=policy)
    assert len(fewer.close) == 9 and not fewer.capped  # 49 of 100


def test_a_capped_run_still_finishes_closes_decided_earlier() -> None:
    rows = [(str(i), h(str(i)), "open", 0) for i in range(20)]
    rows[19] = ("19", h("19"), "closing", 0)
    plan = plan_sync(SOURCE, [rec(str(i)) for i in range(5)], known(*rows))
    assert plan.capped and [c.external_id for c in plan.close] == ["19"]
