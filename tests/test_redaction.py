"""One redaction for the whole codebase: every form a secret takes is masked."""

from __future__ import annotations

import base64

import pytest

from fragment_core.config import Settings
from fragment_core.redaction import REDACTED, redact, redact_url

SECRET = "s3cr3t-T0ken-value"


@pytest.mark.parametrize(
    "text",
    [
        f"the server echoed {SECRET} back",
        f"encoded {base64.b64encode(SECRET.encode()).decode()} in a body",
        f"urlsafe {base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip('=')}",
        f"Authorization: Basic {base64.b64encode(f'alice:{SECRET}'.encode()).decode()}",
    ],
)
def test_given_secrets_and_their_base64_forms_are_masked(text: str) -> None:
    out = redact(text, [SECRET, "alice"])
    assert SECRET not in out and base64.b64encode(SECRET.encode()).decode() not in out
    assert base64.b64encode(f"alice:{SECRET}".encode()).decode() not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("authorization=Basic YWxpY2U6cHc=", "YWxpY2U6cHc="),
        ("{'Authorization': 'Token tk_live_1'}", "tk_live_1"),
        ("X-API-Key: k-123456", "k-123456"),
        ("GET https://alice:hunter2@api.example.test/x", "hunter2"),
        ("postgresql://app:pg-pass-9@db:5432/state", "pg-pass-9"),
        ("postgresql+psycopg://app:pg-pass-9@db/state", "pg-pass-9"),
        ("GET /x?password=pw-1&page=2", "pw-1"),
        ("GET /x?page=2&token=tok-2", "tok-2"),
        ("GET /x?api_key=key-3#frag", "key-3"),
        ("GET /x?access_token=at-4", "at-4"),
    ],
)
def test_secret_shapes_are_masked_without_being_told(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


def test_what_is_not_secret_stays_readable() -> None:
    text = "GET https://alice@api.example.test/x?page=2 (HTTP 404)"
    assert redact(text) == text
    assert redact_url("https://alice:pw@h.test/p?page=2&password=x") == (
        f"https://alice:{REDACTED}@h.test/p?page=2&password={REDACTED}"
    )


def test_settings_repr_hides_the_postgres_password() -> None:
    settings = Settings.model_validate(
        {
            "tasks_api": {"token": "t-secret-1"},
            "state": {"url": "postgresql://app:pg-pass-9@db:5432/state"},
        }
    )
    for text in (repr(settings), str(settings), repr(settings.state)):
        assert "pg-pass-9" not in text and "t-secret-1" not in text
        assert "postgresql://app:" in text
    assert settings.state.url.endswith("pg-pass-9@db:5432/state")  # the value is intact
