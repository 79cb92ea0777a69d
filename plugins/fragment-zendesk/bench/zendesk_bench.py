"""Requests of a full fetch vs the page-size floor, 429s at Zendesk's documented limits,
and requests of an incremental run with nothing changed (against FakeZendesk).

    python plugins/fragment-zendesk/bench/zendesk_bench.py [--tickets 2500] [--sustained-runs 5]
"""

from __future__ import annotations

import argparse
import math
import time

from fragment_zendesk import ZendeskConnector
from fragment_zendesk.testing import FakeZendesk

EXPORT = "/api/v2/search/export.json"
INCREMENTAL = "/api/v2/incremental/tickets/cursor.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=2500)
    parser.add_argument(
        "--sustained-runs", type=int, default=5,
        help="full fetches back to back past a minute of the export limit (0: skip)",
    )
    args = parser.parse_args()
    fake = FakeZendesk()  # export 100/min, incremental 10/min: Zendesk's documented limits
    with fake.api:
        for _ in range(args.tickets):  # created over about a day, 30 s apart
            fake.add_ticket()
            fake.clock.advance(seconds=30)
        fake.add_tickets(10, status="solved")
        for page_size in (100, 1000):
            fake.api.reset()
            connector = ZendeskConnector(fake.config(page_size=page_size), source="bench")
            started = time.perf_counter()
            records = list(connector.fetch_backlog())
            took = time.perf_counter() - started
            pages = len(fake.api.requests_to("GET", EXPORT))
            floor = math.ceil(args.tickets / page_size)
            total = connector.client.requests_made
            print(
                f"full fetch, page_size {page_size}: {len(records)} tickets, "
                f"{pages} export pages + 1 count = {pages + 1} listing requests "
                f"(floor {floor}, +5% = {floor * 1.05:.2f}); {total} requests in all "
                f"with the once-a-run names; {took:.2f} s"
            )
        cursor = max(v for r in records if (v := connector.cursor_value(r)) is not None)
        fake.clock.advance(minutes=2)
        for overlap in (300, 0):
            fake.api.reset()
            config = fake.config(cursor_overlap_seconds=overlap)
            connector = ZendeskConnector(config, source="bench")
            reread = len(list(connector.fetch_changes(cursor)))
            pages = len(fake.api.requests_to("GET", INCREMENTAL))
            print(
                f"incremental, nothing changed, overlap {overlap} s: {pages} incremental "
                f"request(s), {connector.client.requests_made} in all ({reread} tickets "
                "re-read in the overlap; re-reading one costs the run's name lookups)"
            )
        over = fake.export_limit.over + fake.incremental_limit.over
        print(f"429s answered at the documented limits: {over}")
    if args.sustained_runs:
        _sustained(args.tickets, args.sustained_runs)


def _sustained(tickets: int, runs: int) -> None:
    """Back-to-back full fetches past a whole minute of the export's documented limit
    (100 a minute, enforced by the fake; the connector's default budget)."""
    fake = FakeZendesk()
    with fake.api:
        fake.add_tickets(tickets)
        connector = ZendeskConnector(fake.config(), source="bench")
        started = time.perf_counter()
        for _ in range(runs):
            assert len(list(connector.fetch_backlog())) == tickets
        took = time.perf_counter() - started
        pages = len(fake.api.requests_to("GET", EXPORT))
        print(
            f"{runs} full fetches back to back at Zendesk's export limit: {pages} export "
            f"requests in {took:.1f} s, 429s answered: {fake.export_limit.over}"
        )


if __name__ == "__main__":
    main()
