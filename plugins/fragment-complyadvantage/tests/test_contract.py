"""The connector contract suite, run against both fakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fragment_complyadvantage import MeshConnector, SearchesConnector
from fragment_complyadvantage.testing import FakeComplyAdvantage, FakeMesh

from fragment_core.testing import ConnectorContract

BACKLOG = 250  # > two pages of 100


class TestSearchesContract(ConnectorContract):
    connector_class = SearchesConnector

    @pytest.fixture
    def fake(self, ca: FakeComplyAdvantage) -> FakeComplyAdvantage:
        ca.add_searches(BACKLOG)
        ca.add_searches(7, match_status="no_match")
        ca.add_searches(3, match_status="false_positive")
        return ca

    @pytest.fixture
    def connector(self, fake: FakeComplyAdvantage) -> SearchesConnector:
        return SearchesConnector(fake.config(), source="screening")

    @pytest.fixture
    def bad_connector(self, fake: FakeComplyAdvantage) -> SearchesConnector:
        return SearchesConnector(fake.config(api_key="ca-revoked-key-999"), source="screening")

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        good = {"search_term": "Jane", "total_hits": 1, "share_url": "https://x/y"}
        return [
            {**good},  # no id
            {**good, "id": 1, "search_term": ""},
            {**good, "id": 2, "total_hits": "many"},
            {**good, "id": 3, "share_url": None},
            {**good, "id": 4, "updated_at": "last week"},
            "not an object",
        ]

    @pytest.fixture
    def secrets(self, fake: FakeComplyAdvantage) -> list[str]:
        return [fake.token, "ca-revoked-key-999"]

    @pytest.fixture
    def effect_count(self, fake: FakeComplyAdvantage) -> Callable[[str], int]:
        return fake.updates


class TestMeshContract(ConnectorContract):
    connector_class = MeshConnector

    @pytest.fixture
    def fake(self, mesh: FakeMesh) -> FakeMesh:
        mesh.add_cases(BACKLOG - 50)
        mesh.add_cases(50, stage="In review", type="CUSTOMER_MONITORING")
        mesh.add_cases(6, stage="Approved")
        mesh.add_cases(4, stage="Rejected", type="CUSTOMER_MONITORING")
        return mesh

    @pytest.fixture
    def connector(self, fake: FakeMesh) -> MeshConnector:
        return MeshConnector(fake.config(), source="mesh-cases")

    @pytest.fixture
    def bad_connector(self, fake: FakeMesh) -> MeshConnector:
        return MeshConnector(fake.config(password="mesh-pw-old-one"), source="mesh-cases")

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        stage = {"identifier": "s-1", "name": "Not started", "stage_type": "INITIAL"}
        customer = {"name": "Jane", "external_identifier": "c-1"}
        good = {"type": "CUSTOMER_ONBOARDING", "stage": stage, "customer": customer}
        return [
            {**good},  # no identifier
            {**good, "identifier": "a", "customer": None},
            {**good, "identifier": "b", "customer": {"risk_level": "LOW"}},
            {**good, "identifier": "c", "review_items_count": "two"},
            {**good, "identifier": "d", "stage": "INITIAL"},
            {**good, "identifier": "e", "updated_at": "yesterday"},
            ["not", "an", "object"],
        ]

    @pytest.fixture
    def secrets(self, fake: FakeMesh) -> list[str]:
        return [fake.password, "mesh-pw-old-one", *fake.tokens]

    @pytest.fixture
    def effect_count(self, fake: FakeMesh) -> Callable[[str], int]:
        return fake.decisions
