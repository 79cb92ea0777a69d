"""Two Zendesk sources with different base URLs work side by side in one process."""

from __future__ import annotations

import os

from fragment_zendesk import ZendeskConnector
from fragment_zendesk.client import split_host
from fragment_zendesk.testing import FakeZendesk


def test_two_sources_with_different_base_urls_in_one_process() -> None:
    assert not {"ZENPY_FORCE_NETLOC", "ZENPY_FORCE_SCHEME"} & set(os.environ)
    east, west = FakeZendesk(subdomain="east"), FakeZendesk(subdomain="west", api_token="zd-w")
    with east.api, west.api:
        east_ids = east.add_tickets(3)
        west_ids = west.add_tickets(5)
        a = ZendeskConnector(east.config(), source="east")
        b = ZendeskConnector(west.config(), source="west")
        # interleaved, so a process-wide setting could not serve both
        assert [r["id"] for r in a.fetch_backlog()] == east_ids
        assert [r["id"] for r in b.fetch_backlog()] == west_ids
        assert [r["id"] for r in a.fetch_backlog()] == east_ids
        task = a.to_task(next(iter(a.fetch_backlog())))
        assert task.fields.url == f"https://east.zendesk.com/agent/tickets/{east_ids[0]}"
        assert b.to_task(next(iter(b.fetch_backlog()))).fields.url.startswith(
            "https://west.zendesk.com/agent/tickets/"
        )
        assert a.client.zenpy.tickets.base_url == east.api.base_url.removeprefix("https://")
        assert b.client.zenpy.tickets.base_url == west.api.base_url.removeprefix("https://")
        assert not east.invalid_requests and not west.invalid_requests


def test_base_url_is_split_into_zenpys_subdomain_and_domain() -> None:
    assert split_host("https://acme.zendesk.com") == ("acme", "zendesk.com")
    assert split_host("https://zd.proxy.example:8443") == ("zd", "proxy.example:8443")
    assert split_host("https://127.0.0.1:9443") == ("127", "0.0.1:9443")
