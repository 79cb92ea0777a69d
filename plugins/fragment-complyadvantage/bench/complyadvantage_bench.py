"""Requests the ComplyAdvantage connectors make, against the fakes, through the real engine.

For each connector: a full sync of a backlog into a sandbox Tasks API (vendor requests
against the page-size floor, +5% target), a full fetch under a sustained account limit
signalled with Ratelimit-* headers (429s tripped), and an incremental run with nothing
changed (vendor requests).

    python plugins/fragment-complyadvantage/bench/complyadvantage_bench.py [--records N]
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import timedelta
from typing import Any

from fragment_complyadvantage import MeshConnector, SearchesConnector
from fragment_complyadvantage.testing import FakeComplyAdvantage, FakeMesh

from fragment_core.config import SourceSettings
from fragment_core.connector import Connector
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.testing.fakevendor import FakeVendor

PAGE = 100  # the connectors' default page size (neither API documents a maximum)


def _sync(sandbox: Any, connector: Connector[Any], store: StateStore, *, full: bool) -> Any:
    source = SourceSettings(name=connector.source, connector=connector.name)
    client = sandbox.client()
    try:
        return sync_source(source, connector, client, store, full=full)
    finally:
        client.close()


def _measure(
    name: str, fake: FakeVendor, connector: Connector[Any], records: int, fixed: int
) -> None:
    floor = math.ceil(records / PAGE) + fixed
    store = StateStore("sqlite://")
    with run_sandbox() as sandbox:
        fake.api.requests.clear()
        started = time.monotonic()
        report = _sync(sandbox, connector, store, full=True)
        elapsed = time.monotonic() - started
        full_requests = len(fake.api.requests)
        assert report.created == records, report.messages
        fake.api.requests.clear()
        again = _sync(sandbox, connector, store, full=False)
        incremental = len(fake.api.requests)
    print(
        f"{name}: full fetch of {records} records: {full_requests} requests "
        f"(floor {floor} = ceil({records}/{PAGE}) + {fixed} fixed; "
        f"{100 * (full_requests / floor - 1):+.1f}%), sync {elapsed:.1f}s"
    )
    print(
        f"{name}: incremental run, nothing changed: {incremental} requests, "
        f"{again.created + again.updated + again.closed} task writes"
    )


def _limited(name: str, fake: Any, connector: Connector[Any], per_second: int) -> None:
    started = time.monotonic()
    count = sum(1 for _ in connector.fetch_backlog())
    elapsed = time.monotonic() - started
    print(
        f"{name}: full fetch of {count} records at an account limit of {per_second}/s "
        f"(Ratelimit-* headers): {fake.over_limit} 429s, {len(fake.api.requests)} requests, "
        f"{elapsed:.1f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=10, help="account limit, requests/s")
    args = parser.parse_args()
    n = args.records

    ca = FakeComplyAdvantage()
    ca.clock.step = timedelta(seconds=1)
    ca.add_searches(n // 10, match_status="no_match")  # resolved earlier: not listed
    ca.add_searches(n)
    with ca.api:
        connector = SearchesConnector(ca.config(per_page=PAGE, incremental=True), source="s")
        _measure("complyadvantage", ca, connector, n, fixed=1)  # the last, short page

    mesh = FakeMesh()
    mesh.clock.step = timedelta(seconds=1)
    mesh.add_cases(n // 10, stage="Approved")  # decided earlier: not listed
    mesh.add_cases(n)
    with mesh.api:
        connector = MeshConnector(
            mesh.config(page_size=PAGE, incremental_sort="-UPDATED_AT"), source="m"
        )
        _measure("complyadvantage-mesh", mesh, connector, n, fixed=2)  # token, workflows

    small = min(n, 600)
    ca = FakeComplyAdvantage(rate_limit_per_second=args.limit)
    ca.add_searches(small)
    with ca.api:
        _limited("complyadvantage", ca, SearchesConnector(ca.config(per_page=20)), args.limit)
    mesh = FakeMesh(rate_limit_per_second=args.limit)
    mesh.add_cases(small)
    with mesh.api:
        _limited("complyadvantage-mesh", mesh, MeshConnector(mesh.config(page_size=20)), args.limit)


if __name__ == "__main__":
    main()
