"""Opt-in incremental fetches: newest change first, stopping at the cursor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fragment_complyadvantage import MeshConnector, SearchesConnector
from fragment_complyadvantage.testing import FakeComplyAdvantage, FakeMesh

from fragment_core.connector import Capability
from fragment_core.errors import ConfigurationError


def test_searches_changes_since_the_cursor_in_one_request(ca: FakeComplyAdvantage) -> None:
    ca.clock.step = timedelta(seconds=1)
    ids = ca.add_searches(30)
    connector = SearchesConnector(ca.config(incremental=True, per_page=10), source="s")
    assert Capability.INCREMENTAL in connector.capabilities()
    assert Capability.INCREMENTAL not in SearchesConnector(ca.config()).capabilities()
    cursor = max(c for c in map(connector.cursor_value, connector.fetch_backlog()) if c)
    ca.api.requests.clear()

    unchanged = list(connector.fetch_changes(cursor))
    assert [str(r["id"]) for r in unchanged] == [ids[-1]]  # only the one at the cursor
    assert len(ca.api.requests) == 1  # nothing changed: one request

    ca.resolve(ids[3], "false_positive")
    fresh = ca.add_search()
    ca.api.requests.clear()
    changed = {str(r["id"]): r for r in connector.fetch_changes(cursor)}
    assert set(changed) == {ids[-1], ids[3], fresh}
    assert not connector.is_open(changed[ids[3]]) and connector.is_open(changed[fresh])
    (request,) = ca.api.requests
    assert request.query["sort_by"] == "updated_at" and request.query["sort_dir"] == "desc"
    assert "match_status" not in request.query  # resolved searches are listed too
    assert connector.cursor_value(changed[fresh]) > cursor
    with pytest.raises(ConfigurationError, match="not a time"):
        list(connector.fetch_changes("page-7"))


def test_mesh_changes_since_the_cursor_in_one_request(mesh: FakeMesh) -> None:
    mesh.clock.step = timedelta(seconds=1)
    ids = mesh.add_cases(30)
    connector = MeshConnector(
        mesh.config(incremental_sort="-UPDATED_AT", page_size=10), source="m"
    )
    assert Capability.INCREMENTAL in connector.capabilities()
    assert Capability.INCREMENTAL not in MeshConnector(mesh.config()).capabilities()
    cursor = max(c for c in map(connector.cursor_value, connector.fetch_backlog()) if c)
    mesh.api.requests.clear()

    unchanged = list(connector.fetch_changes(cursor))
    assert [r["identifier"] for r in unchanged] == [ids[-1]]
    assert len(mesh.api.requests) == 1  # the token is cached: one request

    mesh.move(ids[2], "Approved")
    mesh.move(ids[5], "In review")
    mesh.api.requests.clear()
    changed = {r["identifier"]: r for r in connector.fetch_changes(cursor)}
    assert set(changed) == {ids[-1], ids[2], ids[5]}
    assert not connector.is_open(changed[ids[2]]) and connector.is_open(changed[ids[5]])
    (request,) = mesh.api.requests
    assert request.query["sort"] == "-UPDATED_AT" and "stage.identifier" not in request.query
