"""The connector contract suite, run against the fake Zendesk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fragment_zendesk import ZendeskConnector
from fragment_zendesk.testing import FakeZendesk

from fragment_core.testing import ConnectorContract

BACKLOG = 230  # > two pages of 100


class TestZendeskContract(ConnectorContract):
    connector_class = ZendeskConnector

    @pytest.fixture
    def fake(self, zendesk: FakeZendesk) -> FakeZendesk:
        zendesk.add_tickets(BACKLOG)
        zendesk.add_tickets(4, status="solved")
        return zendesk

    @pytest.fixture
    def connector(self, fake: FakeZendesk) -> ZendeskConnector:
        return ZendeskConnector(fake.config(), source="support")

    @pytest.fixture
    def bad_connector(self, fake: FakeZendesk) -> ZendeskConnector:
        return ZendeskConnector(fake.config(token="zd-revoked-token"), source="support")

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        good = {"subject": "x", "status": "open", "created_at": "2025-05-01T10:00:00Z"}
        return [
            {**good},  # no id
            {**good, "id": "12"},  # not a number
            {**good, "id": 3, "created_at": "yesterday"},
            {**good, "id": 4, "due_at": "2025-13-45"},
            {**good, "id": 5, "status": None},
            {**good, "id": 6, "tags": "urgent"},
        ]

    @pytest.fixture
    def secrets(self, fake: FakeZendesk) -> list[str]:
        return [fake.api_token, "zd-revoked-token"]

    @pytest.fixture
    def effect_count(self, fake: FakeZendesk) -> Callable[[str], int]:
        return fake.solves
