"""Requests and 429s of the Stripe connectors against the fake, at Stripe's default limit.

    python plugins/fragment-stripe/bench/stripe_bench.py [--reviews 5000] [--warnings 2000]

Prints, for each connector: the requests of a full fetch against the page-size floor
(``ceil(items / 100)``, target: at most 5% above it), the 429s the fake answered while it
enforced Stripe's documented test-mode default of 25 requests a second with the connector's
default pace (20 a second), and the requests of an incremental run with nothing changed.
The fake's OpenAPI validation is off here (it measures the connector, not the validator).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from fragment_stripe import ReviewsConnector, WarningsConnector
from fragment_stripe.testing import FakeStripe

PAGE = 100
STRIPE_TEST_MODE_LIMIT = 25  # requests per second (https://docs.stripe.com/rate-limits)


def measure(fake: FakeStripe, connector: Any, items: int) -> dict[str, Any]:
    """Full fetch, then an incremental one from the full fetch's cursor."""
    limit = fake.limit_rate(STRIPE_TEST_MODE_LIMIT)
    fake.api.requests.clear()
    started = time.monotonic()
    records = list(connector.fetch_backlog())
    seconds = time.monotonic() - started
    full = len(fake.api.requests)
    cursor = max(int(connector.cursor_value(r) or 0) for r in records)
    fake.api.requests.clear()
    changed = list(connector.fetch_changes(str(cursor)))
    incremental = len(fake.api.requests)
    floor = math.ceil(items / PAGE)
    return {
        "connector": connector.name,
        "items": len(records),
        "full_requests": full,
        "floor": floor,
        "over_floor": f"{(full - floor) / floor:+.1%}",
        "429s": limit.over,
        "seconds": round(seconds, 2),
        "incremental_requests": incremental,
        "incremental_items": len(changed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reviews", type=int, default=5000)
    parser.add_argument("--warnings", type=int, default=2000)
    parser.add_argument(
        "--requests-per-second", type=float, default=None,
        help="the connectors' pace (default: their own default, 20); 0 = unpaced",
    )  # fmt: skip
    args = parser.parse_args()
    fake = FakeStripe(openapi=None)
    with fake.api:
        fake.add_reviews(args.reviews)
        fake.add_warnings(args.warnings)
        options: dict[str, Any] = {"api_key": fake.token, "base_url": fake.api.base_url}
        if args.requests_per_second is not None:
            options["requests_per_second"] = args.requests_per_second
        rows = [
            measure(fake, ReviewsConnector(ReviewsConnector.Config.model_validate(options),
                                           source="radar"), args.reviews),
            measure(fake, WarningsConnector(WarningsConnector.Config.model_validate(options),
                                            source="efw"), args.warnings),
        ]  # fmt: skip
    for row in rows:
        print("  ".join(f"{key}={value}" for key, value in row.items()))


if __name__ == "__main__":
    main()
