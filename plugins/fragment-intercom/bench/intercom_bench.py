"""Requests a full fetch and an idle incremental fetch make against the fake Intercom.

Prints, for a backlog of ``--conversations`` open conversations (plus closed ones):

- requests of a full fetch vs the floor Intercom's largest page (150) allows (+5% target);
- 429s at Intercom's documented default rate (10,000 a minute per app, in 10 s windows);
- requests of an incremental run (a new run: new connector) with nothing changed.

    python plugins/fragment-intercom/bench/intercom_bench.py --conversations 3000
"""

from __future__ import annotations

import argparse
import json
import math
import time

from fragment_intercom import IntercomConnector
from fragment_intercom.config import MAX_PAGE_SIZE
from fragment_intercom.testing import FakeIntercom

DOCUMENTED_RATE = 10_000  # requests a minute per private app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--closed", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    fake = FakeIntercom(rate_limit_per_minute=DOCUMENTED_RATE, validate=False)
    start = fake.now() - 86_400
    for i in range(args.conversations):  # a day of conversations
        fake.add_conversation(created_at=start + i * 86_400 // max(args.conversations, 1))
    fake.add_conversations(args.closed, state="closed", created_at=start)
    with fake.api:
        connector = IntercomConnector(fake.config(), source="bench")
        began = time.monotonic()
        records = list(connector.fetch_backlog())
        full_seconds = time.monotonic() - began
        full_requests = len(fake.api.requests)
        tasks = [connector.to_task(r) for r in records]
        cursor = max(int(connector.cursor_value(r) or 0) for r in records)
        connector.close()

        fake.api.reset()
        fake.clock.advance(seconds=300)
        next_run = IntercomConnector(fake.config(), source="bench")  # a run is a new connector
        changed = list(next_run.fetch_changes(str(cursor)))
        incremental_requests = len(fake.api.requests)
        next_run.close()

    floor = math.ceil(args.conversations / MAX_PAGE_SIZE) + 1  # the pages, plus one /me
    assert fake.rate_limit is not None
    result = {
        "conversations": args.conversations,
        "fetched": len(tasks),
        "full_fetch_requests": full_requests,
        "page_size_floor": floor,
        "over_floor_percent": round(100 * (full_requests - floor) / floor, 1),
        "full_fetch_seconds": round(full_seconds, 2),
        "rate_limit_429s": fake.rate_limit.over,
        "incremental_nothing_changed_requests": incremental_requests,
        "incremental_records_reread": len(changed),
    }
    if args.json:
        print(json.dumps(result))
        return
    over = result["over_floor_percent"]
    print(
        f"full fetch: {full_requests} requests for {len(tasks)} conversations (floor {floor} "
        f"= ceil({args.conversations}/{MAX_PAGE_SIZE}) pages + /me; {over}% over; target "
        f"<= 5%) in {full_seconds:.2f} s"
    )
    print(f"429s at Intercom's documented {DOCUMENTED_RATE}/min: {fake.rate_limit.over}")
    print(
        f"incremental run, nothing changed: {incremental_requests} requests "
        f"({len(changed)} conversations re-read in the cursor overlap)"
    )


if __name__ == "__main__":
    main()
