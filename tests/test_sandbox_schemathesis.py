"""Property-based run of the sandbox's own /openapi.json against a running sandbox.

The schema is the one the sandbox serves at /openapi.json (checked equal to the app's, so
cases can be generated at collection time); every generated request, valid or invalid,
goes over real loopback HTTP to a sandbox on a free port. No response may be a 500, and
every response must match its documented status, content type and schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fragment_core.sandbox import run_sandbox
from fragment_core.sandbox.app import create_app
from fragment_core.sandbox.settings import SandboxSettings

TOKEN = "schemathesis-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


OPENAPI = create_app(SandboxSettings(token=SecretStr(TOKEN))).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], database="none"
)


@pytest.fixture(scope="module")
def sandbox_base_url() -> Iterator[str]:
    """A sandbox on a free loopback port that serves exactly the schema cases come from."""
    with run_sandbox(token=TOKEN) as sandbox:
        served = httpx.get(f"{sandbox.base_url}/openapi.json", timeout=10).json()
        assert served == OPENAPI
        yield sandbox.base_url
        assert sandbox.stats()["requests"] >= 10  # the cases really went over HTTP


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_sandbox_conforms_to_its_openapi_schema(
    case: schemathesis.Case, sandbox_base_url: str
) -> None:
    case.call_and_validate(
        base_url=sandbox_base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=CHECKS,
        timeout=10,
    )
