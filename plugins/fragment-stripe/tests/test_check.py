"""`fragment check` says what is wrong with a Stripe source, in words, with no secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fragment_stripe import ReviewsConnector, WarningsConnector
from fragment_stripe.testing import PERMISSIONS, FakeStripe

from fragment_core.cli import cli
from fragment_core.errors import AuthenticationError, ConfigurationError


def _check(fake: FakeStripe, sandbox: Any, tmp_path: Path, key: str) -> tuple[int, str]:
    config = tmp_path / "fragment.toml"
    config.write_text(
        fake.fragment_toml(sandbox.url, tmp_path / "state.db", radar="stripe", efw="stripe-efw")
    )
    env = {"FRAGMENT_TOKEN": sandbox.token, "STRIPE_API_KEY": key}
    result = CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)
    assert key not in result.output
    assert key[-4:] not in result.output  # not even Stripe's masked form of it
    return result.exit_code, result.output


def test_check_passes_and_names_the_mode(stripe_fake: FakeStripe, sandbox: Any, tmp_path: Path):
    stripe_fake.add_review()
    code, output = _check(stripe_fake, sandbox, tmp_path, stripe_fake.token)
    assert code == 0, output
    assert "Stripe (test mode): reviews readable; at least one listed now" in output
    assert "Stripe (test mode): early fraud warnings readable; none listed now" in output


def test_check_says_the_key_was_rejected(stripe_fake: FakeStripe, sandbox: Any, tmp_path: Path):
    code, output = _check(stripe_fake, sandbox, tmp_path, "sk_test_51RolledKey0000000000007777")
    assert code == 1
    assert "Stripe rejected the API key while trying to list Radar reviews (HTTP 401)" in output
    assert "mistyped, rolled or deleted" in output


@pytest.mark.parametrize(
    "missing,source",
    [
        ("rak_review_read", "radar"),
        ("rak_charge_read", "radar"),  # the list expands each review's charge
        ("rak_radar_early_fraud_warning_read", "efw"),
    ],
)
def test_check_names_the_permission_a_restricted_key_lacks(
    stripe_fake: FakeStripe, sandbox: Any, tmp_path: Path, missing: str, source: str
) -> None:
    stripe_fake.add_review()
    stripe_fake.add_warning()
    stripe_fake.scopes.discard(missing)
    code, output = _check(stripe_fake, sandbox, tmp_path, stripe_fake.token)
    assert code == 1
    lines = [line for line in output.splitlines() if f"{source} (stripe" in line]
    assert f"restricted API key lacks the permission {missing}" in " ".join(lines), output
    assert "Dashboard > Developers > API keys" in output
    assert len(PERMISSIONS) == 5


def test_check_refuses_a_key_of_the_wrong_mode(stripe_fake: FakeStripe) -> None:
    config = stripe_fake.reviews_config(mode="live")
    with pytest.raises(ConfigurationError) as info:
        ReviewsConnector(config, source="radar").check()
    assert "api_key is a test-mode key but the source says mode = 'live'" in str(info.value)
    assert stripe_fake.token not in str(info.value)
    assert stripe_fake.api.requests == []  # refused before anything is sent
    with pytest.raises(ConfigurationError, match="test-mode key"):
        list(ReviewsConnector(config, source="radar").fetch_backlog())  # a sync refuses too


def test_check_refuses_a_publishable_key(stripe_fake: FakeStripe) -> None:
    config = stripe_fake.warnings_config(api_key="pk_test_51Publishable000000000000")
    with pytest.raises(ConfigurationError, match=r"publishable key \(pk_\.\.\.\)"):
        WarningsConnector(config, source="efw").check()


def test_live_key_links_to_live_dashboard(stripe_fake: FakeStripe) -> None:
    live = FakeStripe(api_key="rk_live_51LiveRestricted000000000000")
    with live.api:
        live.add_review()
        connector = ReviewsConnector(live.reviews_config(mode="live"), source="radar")
        assert connector.check().startswith("Stripe (live mode)")
        (record,) = list(connector.fetch_backlog())
        url = connector.to_task(record).fields.url
        assert url == f"https://dashboard.stripe.com/payments/{record['payment_intent']}"
    assert not live.invalid_requests


def test_check_error_names_the_source(stripe_fake: FakeStripe) -> None:
    config = stripe_fake.reviews_config(api_key="rk_test_51Other0000")
    with pytest.raises(AuthenticationError, match=r"^source 'radar' \(stripe\): Stripe rejected"):
        ReviewsConnector(config, source="radar").check()
