"""zenpy's HTTP, sent through our :class:`~fragment_core.transport.Transport`.

zenpy talks through a ``requests.Session`` it accepts as ``session=``. We give it one whose
only transport adapter (requests' own extension point) hands every request to a
``Transport``: credentials attached on the configured origin only, the endpoint's rate
budget, one retry loop (429 waited out per ``Retry-After``, 5xx and connection errors
retried) and errors mapped to our classes. zenpy itself is not patched: it never sees a
429 or a 5xx (its own endless 429 sleep is switched off as well, with a budget of 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from fragment_core.errors import TransientError
from fragment_core.transport import CrossOriginError, Transport, origin_of

#: Request headers passed on (requests adds its own connection headers; httpx makes its own).
_FORWARDED = ("accept", "content-type", "user-agent")


class TransportAdapter(BaseAdapter):
    """A requests adapter sending through the ``Transport`` that ``route(method, path)`` picks."""

    def __init__(self, origin: str, route: Callable[[str, str], Transport], where: str) -> None:
        super().__init__()
        self.origin = origin_of(origin)
        self.route = route
        self.where = where

    def send(  # type: ignore[override]  # requests' signature, keyword defaults unused
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        url = str(request.url)
        if origin_of(url) != self.origin:
            raise CrossOriginError(
                f"zenpy asked for {request.method} {urlsplit(url).path} on "
                f"{origin_of(url)}, outside the configured {self.origin}; refused",
                where=self.where,
            )
        method = str(request.method)
        path = urlsplit(url).path
        transport = self.route(method, path)
        headers = {
            k: v if isinstance(v, str) else v.decode()
            for k, v in request.headers.items()
            if k.lower() in _FORWARDED
        }
        body = request.body
        content = body.encode() if isinstance(body, str) else body
        if not isinstance(content, bytes | None):
            raise TypeError("zenpy sent a streamed body; only JSON bodies are expected")

        def once() -> httpx.Response:
            answer = transport.request(
                method, url, content=content, headers=headers, retry=False,
                operation=f"{method} {path}",
            )  # fmt: skip
            if answer.content and "json" in answer.headers.get("content-type", ""):
                try:
                    json.loads(answer.content)
                except ValueError:
                    raise TransientError(
                        f"{method} {path}: the answer is not complete JSON (a truncated "
                        f"response of {len(answer.content)} bytes)",
                        where=self.where,
                    ) from None
            return answer

        return _to_requests(transport.retrying(once), request)

    def close(self) -> None:
        """Nothing of its own to close (the transports are closed by their owner)."""


def _to_requests(answer: httpx.Response, request: requests.PreparedRequest) -> requests.Response:
    response = requests.Response()
    response.status_code = answer.status_code
    response.headers = CaseInsensitiveDict(dict(answer.headers.items()))
    response._content = answer.content
    response.encoding = answer.encoding
    response.reason = answer.reason_phrase
    response.url = str(request.url)
    response.request = request
    return response


def session_for(adapter: TransportAdapter) -> requests.Session:
    """A ``requests.Session`` for zenpy that sends only through ``adapter``."""
    session = requests.Session()
    session.trust_env = False  # no netrc credentials, no proxy variables: ours decide
    session.adapters.clear()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
