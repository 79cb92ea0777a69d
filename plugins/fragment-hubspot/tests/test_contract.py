"""The connector contract suite, run against the fake HubSpot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fragment_hubspot import HubSpotConnector
from fragment_hubspot.testing import FakeHubSpot

from fragment_core.testing import ConnectorContract

BACKLOG = 450  # > two pages of 200


class TestHubSpotContract(ConnectorContract):
    connector_class = HubSpotConnector

    @pytest.fixture
    def fake(self, hubspot: FakeHubSpot) -> FakeHubSpot:
        hubspot.add_tasks(BACKLOG)
        hubspot.add_tasks(5, hs_task_status="COMPLETED")
        return hubspot

    @pytest.fixture
    def connector(self, fake: FakeHubSpot) -> HubSpotConnector:
        return HubSpotConnector(fake.config(), source="crm-tasks")

    @pytest.fixture
    def bad_connector(self, fake: FakeHubSpot) -> HubSpotConnector:
        return HubSpotConnector(fake.config(access_token="pat-na1-revoked"), source="crm-tasks")

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        good = {"hs_task_subject": "x", "hs_lastmodifieddate": "2025-05-01T00:00:00.000Z"}
        return [
            {"properties": good},  # no id
            {"id": "1", "properties": None},
            {"id": "2", "properties": {**good, "hs_timestamp": "next tuesday"}},
            {"id": "3", "properties": {**good, "hs_lastmodifieddate": "yesterday"}},
            "not an object",
        ]

    @pytest.fixture
    def secrets(self, fake: FakeHubSpot) -> list[str]:
        return [fake.token, "pat-na1-revoked"]

    @pytest.fixture
    def effect_count(self, fake: FakeHubSpot) -> Callable[[str], int]:
        return fake.completions

    def test_malformed_records_raise_bad_record_error(
        self, connector: HubSpotConnector, malformed_records: list[Any]
    ) -> None:
        # "not an object" names neither record nor field: the suite's rule is kept for the
        # others, and the non-object is checked on its own here
        from fragment_core.errors import BadRecordError

        with pytest.raises(BadRecordError, match="expected a task object"):
            connector.to_task(malformed_records[-1])
        super().test_malformed_records_raise_bad_record_error(connector, malformed_records[:-1])
