"""pytest plugin (entry point ``pytest11``): fixtures for connector authors.

- ``fake_api``: a factory of started :class:`~fragment_core.testing.FakeAPI` servers,
  ``fake_api("hubspot")``, each stopped at teardown.
- ``fake_vendor_clean``: a list to append :class:`~fragment_core.testing.FakeVendor` fakes
  to; at teardown it asserts none logged an invalid request.
- ``sandbox`` / ``sandbox_factory``: a running local Tasks API (see ``sandbox_fixtures``).
- ``fragment_runner``: a configured runner for one source against ``sandbox`` (see
  ``runner_fixtures``).
- Hypothesis profiles ``ci`` (chosen when ``CI=true``: derandomized), ``dev`` and ``soak``
  (see ``hypothesis_profiles``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from fragment_core.testing.fakeapi import FakeAPI
from fragment_core.testing.fakevendor import FakeVendor
from fragment_core.testing.hypothesis_profiles import register_profiles
from fragment_core.testing.runner_fixtures import fragment_runner  # noqa: F401
from fragment_core.testing.sandbox_fixtures import sandbox, sandbox_factory  # noqa

# Before any test module builds its settings: derandomized in CI (see hypothesis_profiles).
register_profiles()


@pytest.fixture
def fake_api() -> Iterator[Callable[..., FakeAPI]]:
    """Factory: ``fake_api(name)`` returns a started FakeAPI, stopped at teardown."""
    started: list[FakeAPI] = []

    def make(name: str = "fake") -> FakeAPI:
        api = FakeAPI(name=name).start()
        started.append(api)
        return api

    yield make
    for api in reversed(started):
        api.stop()


@pytest.fixture
def fake_vendor_clean() -> Iterator[list[FakeVendor]]:
    """Append fakes to the yielded list; teardown fails if any logged an invalid request."""
    fakes: list[FakeVendor] = []
    yield fakes
    for fake in fakes:
        assert not fake.invalid_requests, (
            f"fake {fake.api.name!r} saw invalid requests or gave invalid responses: "
            f"{fake.invalid_requests}"
        )
