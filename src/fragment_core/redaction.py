"""One secret redaction for the whole codebase.

:func:`redact` masks, in any text that may reach a log, an error, a report or a repr:

* the given secret values, and their base64 forms (including the base64 of
  ``user:secret`` that HTTP Basic auth sends);
* the value of ``Authorization`` / ``Proxy-Authorization`` headers and of API-key style
  headers (``X-API-Key: ...``);
* the password of a URL's userinfo (``https://user:pass@host``,
  ``postgresql://user:pass@host/db``);
* secret query parameters (``?password=``, ``token=``, ``api_key=``, ``access_token=``...).

:func:`redact_url` masks the secrets of one URL. A :class:`RedactingFilter` applies
:func:`redact` to log records (installed on the ``httpx``/``httpcore`` loggers).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable

__all__ = ["REDACTED", "RedactingFilter", "redact", "redact_url", "register_secrets"]

#: What a secret is replaced with.
REDACTED = "<redacted>"

_SECRET_PARAM = (
    r"(?:password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|"
    r"id_token|api_key|apikey|api-key|key|auth|sig|signature)"
)
_QUERY = re.compile(rf"(?i)([?&;]{_SECRET_PARAM}=)[^&#\s'\"<>]*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/?#@\s'\"]*:)[^@/?#\s'\"]*(@)")
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(basic|bearer|token|digest|negotiate)\s+)?[^\s'\",}]+"
)
_KEY_HEADER = re.compile(
    r"(?i)\b((?:x-)?(?:api[-_]?key|auth[-_]?token|access[-_]?token)['\"]?\s*[:=]\s*['\"]?)"
    r"[^\s'\",}&]+"
)


def _forms(secret: str) -> set[str]:
    """``secret`` and the base64 forms it may take on the wire."""
    forms = {secret}
    raw = secret.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms.add(encoded)
        forms.add(encoded.rstrip("="))
    return {form for form in forms if len(form) >= 4 or form == secret}


def _basic_forms(secrets: list[str]) -> set[str]:
    """base64 of every ``a:b`` pair among the secrets (Basic auth of user and password)."""
    forms: set[str] = set()
    for user in secrets:
        for password in secrets:
            if user != password:
                forms.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    return forms


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret form listed in the module docstring replaced by
    ``<redacted>``. Empty secrets are ignored."""
    if not text:
        return text
    values = [s for s in secrets if s]
    forms: set[str] = set()
    for secret in values:
        forms |= _forms(secret)
    forms |= _basic_forms(values)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    text = _AUTH_HEADER.sub(
        lambda m: f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}{REDACTED}", text
    )
    text = _KEY_HEADER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", text)
    return _QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_url(url: str) -> str:
    """``url`` with its userinfo password and secret query parameters masked."""
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", url)
    return _QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Applies :func:`redact` (with the registered secrets) to every log record."""

    def __init__(self) -> None:
        super().__init__("fragment-redact")
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        """Register more secret values to mask."""
        with self._lock:
            self._secrets |= {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        redacted = redact(message, tuple(self._secrets))
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_LOG_FILTER = RedactingFilter()
for _name in ("httpx", "httpcore", "fragment_core"):
    logging.getLogger(_name).addFilter(_LOG_FILTER)


def register_secrets(secrets: Iterable[str]) -> None:
    """Mask these values in the records of the ``httpx``/``httpcore`` loggers."""
    _LOG_FILTER.add(secrets)
