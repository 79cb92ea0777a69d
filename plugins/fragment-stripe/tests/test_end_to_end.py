"""fake Stripe -> `fragment sync` -> sandbox -> completed in the sandbox -> write-back, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from fragment_stripe.connector import idempotency_key
from fragment_stripe.testing import FakeStripe

from fragment_core.cli import cli
from fragment_core.task import TaskStatus, task_uid
from fragment_core.testing.cli import sync_json

#: Few, quick retries so a fault storm fails the run in seconds.
RETRIES = "retry_attempts = 2\nrate_limit_wait_seconds = 0.2\n"


def _config(tmp_path: Path, sandbox: Any, fake: FakeStripe, extra: str = "", **sources: str):
    config = tmp_path / "fragment.toml"
    sources = sources or {"radar": "stripe"}
    config.write_text(fake.fragment_toml(sandbox.url, tmp_path / "state.db", **sources) + extra)
    env = {"FRAGMENT_TOKEN": sandbox.token, "STRIPE_API_KEY": fake.token}
    return config, env


def _sync(config: Path, env: dict[str, str], source: str = "radar", *, code: int = 0,
          full: bool = False) -> dict[str, Any]:  # fmt: skip
    flags = ["--full"] if full else []
    return sync_json(config, env, source, *flags, code=code, secrets=[env["STRIPE_API_KEY"]])


def test_review_completed_in_fragment_is_approved_once_and_a_resolved_one_closes_silently(
    stripe_fake: FakeStripe, sandbox: Any, tmp_path: Path
) -> None:
    ids = stripe_fake.add_reviews(3, amount=12345, currency="usd", email="jo@example.com")
    config, env = _config(tmp_path, sandbox, stripe_fake, RETRIES)

    first = _sync(config, env)
    assert first["created"] == 3
    client = sandbox.client()
    done, resolved = ids[0], ids[2]
    uid = task_uid("radar", done)
    synced = client.get_task(uid)
    assert synced.fields["title"] == "Radar review: 123.45 USD (rule) for jo@example.com"
    review = stripe_fake.reviews[done]
    assert synced.fields["url"] == (
        f"https://dashboard.stripe.com/test/payments/{review['payment_intent']}"
    )
    assert synced.fields["risk_level"] == "elevated" and synced.fields["amount"] == "123.45"
    client.patch_task(uid, {"status": TaskStatus.DONE.value})

    second = _sync(config, env)
    assert second["written_back"] == 1
    assert stripe_fake.approvals(done) == 1
    (approve,) = stripe_fake.api.requests_to("POST", f"/v1/reviews/{done}/approve")
    assert approve.headers["idempotency-key"] == idempotency_key("approve", uid)
    assert stripe_fake.reviews[done]["open"] is False

    third = _sync(config, env, full=True)
    assert third["written_back"] == 0 and third["closed"] == 0  # approved: left the list
    assert len(stripe_fake.api.requests_to("POST", f"/v1/reviews/{done}/approve")) == 1
    assert client.get_task(uid).status == TaskStatus.DONE  # not reopened

    stripe_fake.close_review(resolved, "refunded")  # resolved in the Dashboard
    fourth = _sync(config, env, full=True)
    assert fourth["closed"] == 1 and fourth["written_back"] == 0
    assert client.get_task(task_uid("radar", resolved)).status == TaskStatus.DONE
    fifth = _sync(config, env, full=True)
    assert fifth["written_back"] == 0  # no echo of a close the source made
    assert stripe_fake.api.requests_to("POST", f"/v1/reviews/{resolved}/approve") == []
    assert stripe_fake.approvals(ids[1]) == 0


def test_warning_refunded_when_the_operator_chose_refund(
    stripe_fake: FakeStripe, sandbox: Any, tmp_path: Path
) -> None:
    refund, keep = stripe_fake.add_warnings(2, amount=500, currency="jpy")
    config, env = _config(tmp_path, sandbox, stripe_fake, RETRIES, efw="stripe-efw")
    assert _sync(config, env, "efw")["created"] == 2
    client = sandbox.client()
    title = client.get_task(task_uid("efw", refund)).fields["title"]
    assert title == "Early fraud warning: 500 JPY (made with stolen card)"  # zero-decimal
    client.patch_task(
        task_uid("efw", refund), {"status": "DONE", "form_data": {"outcome": "refund"}}
    )
    client.patch_task(task_uid("efw", keep), {"status": "DONE"})  # action none: only closes

    report = _sync(config, env, "efw")
    assert report["written_back"] == 2
    assert stripe_fake.refunds_of(refund) == 1 and stripe_fake.refunds_of(keep) == 0
    assert len(stripe_fake.api.requests_to("POST", "/v1/refunds")) == 1
    assert _sync(config, env, "efw", full=True)["written_back"] == 0
    assert stripe_fake.refunds_of(refund) == 1


def test_fault_storm_and_truncated_page_fail_the_run_and_close_nothing(
    stripe_fake: FakeStripe, sandbox: Any, tmp_path: Path
) -> None:
    ids = stripe_fake.add_reviews(150)  # two pages
    config, env = _config(tmp_path, sandbox, stripe_fake, RETRIES)
    assert _sync(config, env)["created"] == 150
    client = sandbox.client()
    for fault in ({"status": 500}, {"kind": "truncate"}):
        stripe_fake.fail_next(20, path="/v1/reviews", **fault)  # type: ignore[arg-type]
        args = ["--config", str(config), "sync", "radar", "--full"]
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code not in (0, 4), result.output
        assert "Stripe" in result.output and stripe_fake.token not in result.output
        stripe_fake.reset()
        open_now = [client.get_task(task_uid("radar", i)).status for i in ids[:3] + ids[-3:]]
        assert all(status != TaskStatus.DONE for status in open_now)
    assert _sync(config, env, full=True)["closed"] == 0


def test_malformed_review_is_reported_and_the_others_sync(
    sandbox: Any, tmp_path: Path
) -> None:
    fake = FakeStripe(openapi=None)  # the broken item breaks Stripe's schema on purpose
    with fake.api:
        fake.add_reviews(2)
        fake.add_raw("reviews", {"id": "prv_broken", "object": "review", "created": "soon",
                                 "open": True, "charge": "ch_x"})  # fmt: skip
        config, env = _config(tmp_path, sandbox, fake, RETRIES)
        report = _sync(config, env, code=4)  # partial: reported, the rest applied
    assert report["created"] == 2
    (error,) = report["record_errors"]
    assert error["record_id"] == "prv_broken" and error["field"] == "created"


def test_a_retried_approve_across_two_processes_carries_the_same_key(
    stripe_fake: FakeStripe, sandbox: Any, tmp_path: Path
) -> None:
    (review_id,) = stripe_fake.add_reviews(1)
    config, env = _config(tmp_path, sandbox, stripe_fake, RETRIES)
    _sync(config, env)
    uid = task_uid("radar", review_id)
    sandbox.client().patch_task(uid, {"status": "DONE"})

    # process 1: the approve reaches Stripe, which applies it; the process dies before the
    # answer comes back, so its state never records the write-back as done
    started: list[subprocess.Popen[bytes]] = []
    stripe_fake.after_effect = lambda: os.kill(started[0].pid, signal.SIGKILL)
    first = subprocess.Popen(
        [sys.executable, "-m", "fragment_core", "--config", str(config), "sync", "radar"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.append(first)
    assert first.wait(timeout=60) == -signal.SIGKILL
    stripe_fake.after_effect = None
    assert stripe_fake.approvals(review_id) == 1

    # process 2 (this one) retries the write-back: same key, Stripe replays, no second effect
    report = _sync(config, env)
    assert report["written_back"] == 1
    posts = stripe_fake.api.requests_to("POST", f"/v1/reviews/{review_id}/approve")
    assert len(posts) == 2
    assert {p.headers["idempotency-key"] for p in posts} == {idempotency_key("approve", uid)}
    assert stripe_fake.replayed == [idempotency_key("approve", uid)]
    assert stripe_fake.approvals(review_id) == 1
    assert _sync(config, env)["written_back"] == 0
