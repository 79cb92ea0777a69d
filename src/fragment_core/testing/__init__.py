"""Tools for connector authors: fixtures, FakeAPI, and the connector contract suite.

Installing fragment-core registers the pytest plugin (entry point ``pytest11``), so the
fixtures (``fake_api``, ``sandbox``...) are available in any test suite.
"""

from fragment_core.testing.fakeapi import (
    FakeAPI,
    FakeRequest,
    FakeResponse,
    RecordedRequest,
)
from fragment_core.testing.fakevendor import Clock, FakeVendor, RateLimit, VersionedStore

__all__ = [
    "Clock",
    "ConnectorContract",
    "FakeAPI",
    "FakeRequest",
    "FakeResponse",
    "FakeVendor",
    "RateLimit",
    "RecordedRequest",
    "VersionedStore",
]


def __getattr__(name: str) -> object:
    # the contract suite imports pytest; load it only when asked for
    if name == "ConnectorContract":
        from fragment_core.testing.contract import ConnectorContract

        return ConnectorContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
