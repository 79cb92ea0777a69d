"""Record/replay: cassettes recorded against a FakeAPI carry no secret, and replay offline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from vcr.errors import CannotOverwriteExistingCassetteException

from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.testing.recording import RECORD_MODE_ENV, Redactor, use_cassette

SECRET = "sk_live_R3c0rd1ngS3cret"
ISSUED = "issued-access-token-value"
COOKIE = "sessid-8d7f6e5c"


def build_api() -> FakeAPI:
    api = FakeAPI(name="vendor")

    @api.route("GET", "/items")
    def items(req: FakeRequest):
        return FakeResponse(
            json={
                "items": [{"id": "1", "note": f"made with key {SECRET}"}],
                "next_page_token": "page-2",
                "access_token": ISSUED,
            },
            headers={"Set-Cookie": f"session={COOKIE}", "X-Echo": f"key={SECRET}"},
        )

    @api.route("POST", "/oauth/token")
    def token(req: FakeRequest):
        return {"access_token": ISSUED, "expires_in": 3600, "form": req.form()}

    @api.route("POST", "/items/{item_id}/close")
    def close(req: FakeRequest):
        api.effect(f"close:{req.path_params['item_id']}")
        return {"closed": req.path_params["item_id"], "echo": req.json()}

    return api


def exchange(base_url: str) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET}
    with httpx.Client(base_url=base_url, headers=headers) as client:
        return [
            client.get("/items", params={"api_key": SECRET, "page_token": "page-1"}),
            client.post("/oauth/token", data={"client_id": "app", "client_secret": SECRET}),
            client.post("/items/1/close", json={"password": SECRET, "note": f"by {SECRET}"}),
        ]


def test_cassette_is_scrubbed_and_replays_offline(tmp_path: Path) -> None:
    cassette = tmp_path / "cassettes" / "vendor.yaml"
    api = build_api()
    with api, use_cassette(cassette, secrets=[SECRET], record_mode="once"):
        base_url = api.base_url
        live = exchange(base_url)
    assert [r.status_code for r in live] == [200, 200, 200]
    assert api.effects["close:1"] == 1
    assert live[0].json()["items"][0]["note"] == f"made with key {SECRET}"  # live is untouched

    text = cassette.read_text()
    for leaked in (SECRET, ISSUED, COOKIE):
        assert leaked not in text
    assert "<redacted>" in text
    assert "page-2" in text and "page_token=page-1" in text  # pagination is kept
    assert "client_id=app" in text

    # the server is gone: everything comes from the cassette
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/items", timeout=1)
    with use_cassette(cassette, secrets=[SECRET], record_mode="none"):
        replayed = exchange(base_url)
        with pytest.raises(CannotOverwriteExistingCassetteException):
            httpx.get(base_url + "/not-recorded")
    assert [r.status_code for r in replayed] == [200, 200, 200]
    first = replayed[0].json()
    assert first["next_page_token"] == "page-2"
    assert first["items"][0]["note"] == "made with key <redacted>"
    assert first["access_token"] == "<redacted>"
    assert replayed[2].json() == {
        "closed": "1",
        "echo": {"password": "<redacted>", "note": "by <redacted>"},
    }
    assert api.effects["close:1"] == 1


def test_record_mode_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RECORD_MODE_ENV, raising=False)
    with build_api() as api:
        with (
            use_cassette(tmp_path / "empty.yaml"),
            pytest.raises(CannotOverwriteExistingCassetteException),
        ):
            httpx.get(api.url_for("/items"))  # default "none": never reaches the network
        assert api.requests == []
        monkeypatch.setenv(RECORD_MODE_ENV, "once")
        with use_cassette(tmp_path / "new.yaml", secrets=[SECRET]):
            assert httpx.get(api.url_for("/items")).status_code == 200
    assert (tmp_path / "new.yaml").is_file()


def test_redactor_pieces() -> None:
    redactor = Redactor([SECRET, "short"], extra_names=["X-Tenant"])
    assert redactor.uri(f"https://x.test/a/{SECRET}?key={SECRET}&cursor=c2&q=1") == (
        "https://x.test/a/<redacted>?key=%3Credacted%3E&cursor=c2&q=1"
    )
    assert redactor.headers({"X-Tenant": "acme", "Accept": ["a", f"b{SECRET}"]}) == {
        "X-Tenant": "<redacted>",
        "Accept": ["a", "b<redacted>"],
    }
    assert redactor.data(b'{"refresh_token": "r1", "n": [{"secret": "s"}]}') == (
        b'{"refresh_token": "<redacted>", "n": [{"secret": "<redacted>"}]}'
    )
    assert redactor.data(b"\xff" + SECRET.encode()) == b"\xff<redacted>"
    assert redactor.data("plain short text") == "plain <redacted> text"
    assert redactor.data(None) is None
