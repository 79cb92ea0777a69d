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

__all__ = [
    "ConnectorContract",
    "FakeAPI",
    "FakeRequest",
    "FakeResponse",
    "RecordedRequest",
]


def __getattr__(name: str) -> object:
    # the contract suite imports pytest; load it only when asked for
    if name == "ConnectorContract":
        from fragment_core.testing.contract import ConnectorContract

        return ConnectorContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
