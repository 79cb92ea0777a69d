"""Options of one sandbox: token, database, and the production-like behaviours."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from pydantic import SecretStr

#: Most items one batch request may carry (``--max-batch``).
DEFAULT_MAX_BATCH = 500
#: Page size of ``GET /tasks`` when ``limit`` is not given, and the largest allowed.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PERIODS |= {"h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*([a-z]+))?\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` in any window of ``period`` seconds."""

    requests: int
    period: float = 60.0


def parse_rate(value: str | int | RateLimit | None) -> RateLimit | None:
    """``"60/min"``, ``"5/s"``, ``"1000/hour"`` or a number per minute; 0/None = off."""
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, int):
        return RateLimit(value) if value > 0 else None
    match = _RATE.match(value.lower())
    if not match or (match.group(2) and match.group(2) not in _PERIODS):
        raise ValueError(f"rate limit {value!r}: expected N/s, N/min or N/hour, e.g. 60/min")
    requests = int(match.group(1))
    period = _PERIODS[match.group(2) or "min"]
    return RateLimit(requests, period) if requests > 0 else None


def parse_duration(value: str | float) -> float:
    """``"25ms"``, ``"0.5s"`` or a number of seconds -> seconds."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value.lower())
        if not match:
            raise ValueError(f"duration {value!r}: expected e.g. 25ms or 0.5s")
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    if seconds < 0:
        raise ValueError(f"duration {value!r} must not be negative")
    return seconds


@dataclass(frozen=True)
class SandboxSettings:
    """Everything that shapes one sandbox app."""

    token: SecretStr
    db: str = ":memory:"
    rate_limit: RateLimit | None = None
    faults: float = 0.0
    seed: int | None = None
    latency: float = 0.0
    max_batch: int = DEFAULT_MAX_BATCH
    fault_retry_after: float = 1.0
    post_conflict_status: int = 409
    #: Login token of the operator page (``/operator/login?token=...``); random by default.
    operator_token: SecretStr = field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(18)), repr=False
    )
    #: Host names (besides IP addresses and ``localhost``) the operator page answers to.
    allowed_hosts: tuple[str, ...] = ()
    #: Seconds an operator session lasts after sign-in (then the sign-in link again).
    operator_session_ttl: float = 8 * 3600.0
    #: Hold the first write requests until this many are in flight at once (a test aid:
    #: it proves a client overlaps its writes); 0 = off.
    hold_writes: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.faults <= 1.0:
            raise ValueError(f"faults={self.faults}: expected a share between 0 and 1")
        if self.max_batch < 1:
            raise ValueError(f"max_batch={self.max_batch}: expected at least 1")
        if self.hold_writes < 0:
            raise ValueError(f"hold_writes={self.hold_writes}: must not be negative")
        if self.latency < 0:
            raise ValueError(f"latency={self.latency}: must not be negative")
        if not self.token.get_secret_value():
            raise ValueError("token must not be empty")
        if not self.operator_token.get_secret_value():
            raise ValueError("operator_token must not be empty")
