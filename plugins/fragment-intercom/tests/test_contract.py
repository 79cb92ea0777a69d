"""The connector contract suite, run against the fake Intercom."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fragment_intercom import IntercomConnector
from fragment_intercom.testing import FakeIntercom

from fragment_core.testing import ConnectorContract

BACKLOG = 120  # > two pages of 50


class TestIntercomContract(ConnectorContract):
    connector_class = IntercomConnector

    @pytest.fixture
    def fake(self, intercom: FakeIntercom) -> FakeIntercom:
        intercom.add_conversations(BACKLOG)
        intercom.add_conversations(5, state="closed")
        intercom.add_conversations(3, state="snoozed")
        return intercom

    @pytest.fixture
    def connector(self, fake: FakeIntercom) -> IntercomConnector:
        return IntercomConnector(fake.config(page_size=50), source="support-inbox")

    @pytest.fixture
    def bad_connector(self, fake: FakeIntercom) -> IntercomConnector:
        return IntercomConnector(
            fake.config(access_token="dG9rOnJldm9rZWQtdG9rZW4="), source="support-inbox"
        )

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        good = {"type": "conversation", "state": "open", "updated_at": 1746176400}
        return [
            {**good},  # no id
            {**good, "id": "1", "state": "pending"},
            {**good, "id": "2", "updated_at": "yesterday"},
            {**good, "id": "3", "waiting_since": 10**15},
            {**good, "id": "4", "tags": {"type": "tag.list", "tags": "vip"}},
        ]

    @pytest.fixture
    def secrets(self, fake: FakeIntercom) -> list[str]:
        return [fake.token, "dG9rOnJldm9rZWQtdG9rZW4="]

    @pytest.fixture
    def effect_count(self, fake: FakeIntercom) -> Callable[[str], int]:
        return fake.closes
