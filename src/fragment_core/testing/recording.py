"""HTTP record/replay for connector authors with a real account (over vcrpy).

Record once against the live API, replay in tests without network or credentials. Before a
cassette is written, requests *and* responses are scrubbed: secret-looking headers
(``Authorization``, cookies, ``X-Api-Key``...), secret-looking query parameters and JSON
keys (``api_key``, ``access_token``...; pagination tokens such as ``page_token`` are
kept) and every configured secret value, wherever it appears, become ``<redacted>``::

    from fragment_core.testing.recording import use_cassette

    def test_backlog(tmp_path):
        with use_cassette(CASSETTES / "backlog.yaml", secrets=[os.environ["ACME_TOKEN"]]):
            records = list(connector.fetch_backlog())

The record mode defaults to ``none`` (replay only; a request missing from the cassette is
an error). Set ``FRAGMENT_RECORD_MODE=once`` (or pass ``record_mode``) to record. With
pytest-recording, return :func:`redacting_vcr_config` from your ``vcr_config`` fixture.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import vcr
from vcr.request import Request

from fragment_core.testing.fakeapi import REDACTED, is_secret_name

__all__ = [
    "RECORD_MODE_ENV",
    "REDACTED",
    "Redactor",
    "recorder",
    "redacting_vcr_config",
    "use_cassette",
]

#: Environment variable selecting the record mode: ``none``, ``once``, ``new_episodes``, ``all``.
RECORD_MODE_ENV = "FRAGMENT_RECORD_MODE"

_KEEP = re.compile(r"(page|cursor|next|continuation)", re.IGNORECASE)


def _is_secret_key(name: str) -> bool:
    return is_secret_name(name) and not _KEEP.search(name)


class Redactor:
    """Scrubs secrets from vcrpy requests and responses (the hooks vcrpy calls)."""

    def __init__(self, secrets: Iterable[str] = (), *, extra_names: Iterable[str] = ()) -> None:
        # longest first, so a secret containing another is replaced whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.extra_names = {n.lower() for n in extra_names}

    def secret_name(self, name: str) -> bool:
        """Whether a header, query parameter or JSON key named ``name`` holds a secret."""
        return name.lower() in self.extra_names or _is_secret_key(name)

    def text(self, value: str) -> str:
        """``value`` with every configured secret value replaced."""
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return value

    def data(self, body: bytes | str | None) -> bytes | str | None:
        """A body with secret values replaced and secret JSON/form keys redacted."""
        if body is None:
            return None
        is_bytes = isinstance(body, bytes)
        try:
            text = body.decode() if isinstance(body, bytes) else body
        except UnicodeDecodeError:
            assert isinstance(body, bytes)
            for secret in self.secrets:
                body = body.replace(secret.encode(), REDACTED.encode())
            return body
        text = self._structured(self.text(text))
        return text.encode() if is_bytes else text

    def _structured(self, text: str) -> str:
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.dumps(self._json(json.loads(stripped)))
            except ValueError:
                return text
        if "=" in stripped and " " not in stripped and "\n" not in stripped:
            pairs = parse_qsl(stripped, keep_blank_values=True)
            if pairs and any(self.secret_name(k) for k, _ in pairs):
                return urlencode([(k, REDACTED if self.secret_name(k) else v) for k, v in pairs])
        return text

    def _json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (REDACTED if self.secret_name(str(k)) and isinstance(v, str) else self._json(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._json(v) for v in value]
        return value

    def uri(self, uri: str) -> str:
        """A URI with secret query parameters and secret values redacted."""
        parts = urlsplit(self.text(uri))
        query = parse_qsl(parts.query, keep_blank_values=True)
        if query:
            query = [(k, REDACTED if self.secret_name(k) else v) for k, v in query]
            parts = parts._replace(query=urlencode(query))
        return urlunsplit(parts)

    def headers(self, headers: dict[str, Any]) -> dict[str, Any]:
        """Headers with secret-named ones redacted and secret values replaced in the rest."""

        def scrub(name: str, value: Any) -> Any:
            if self.secret_name(name):
                return [REDACTED] * len(value) if isinstance(value, list) else REDACTED
            if isinstance(value, list):
                return [self.text(str(v)) for v in value]
            return self.text(str(value))

        return {name: scrub(name, value) for name, value in headers.items()}

    # -- vcrpy hooks ------------------------------------------------------------------------
    def request(self, request: Request) -> Request:
        """``before_record_request``: a scrubbed copy of the request."""
        request = copy.deepcopy(request)
        request.uri = self.uri(request.uri)
        request.headers = self.headers(dict(request.headers))
        request.body = self.data(request.body)
        return request

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        """``before_record_response``: a scrubbed copy of the response."""
        response = copy.deepcopy(response)
        response["headers"] = self.headers(response.get("headers") or {})
        body = response.get("body") or {}
        if "string" in body:
            body["string"] = self.data(body["string"])
        if response.get("url"):
            response["url"] = self.uri(response["url"])
        return response


def redacting_vcr_config(
    secrets: Iterable[str] = (),
    *,
    record_mode: str | None = None,
    extra_names: Iterable[str] = (),
) -> dict[str, Any]:
    """vcrpy options (also a pytest-recording ``vcr_config``) that scrub every cassette."""
    redactor = Redactor(secrets, extra_names=extra_names)
    return {
        "before_record_request": redactor.request,
        "before_record_response": redactor.response,
        "decode_compressed_response": True,
        "record_mode": record_mode or os.environ.get(RECORD_MODE_ENV, "none"),
    }


def recorder(
    cassette_dir: Path,
    secrets: Iterable[str] = (),
    *,
    record_mode: str | None = None,
    extra_names: Iterable[str] = (),
) -> vcr.VCR:
    """A ``vcr.VCR`` writing scrubbed YAML cassettes under ``cassette_dir``."""
    config = redacting_vcr_config(secrets, record_mode=record_mode, extra_names=extra_names)
    return vcr.VCR(cassette_library_dir=str(cassette_dir), serializer="yaml", **config)


def use_cassette(
    path: Path,
    *,
    secrets: Iterable[str] = (),
    record_mode: str | None = None,
    extra_names: Iterable[str] = (),
) -> AbstractContextManager[Any]:
    """Record to / replay from the cassette at ``path`` with secrets scrubbed."""
    path = Path(path)
    vcr_ = recorder(path.parent, secrets, record_mode=record_mode, extra_names=extra_names)
    return vcr_.use_cassette(path.name)
