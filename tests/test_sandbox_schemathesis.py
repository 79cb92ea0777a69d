"""Property-based run of the sandbox's own /openapi.json against the sandbox (schemathesis).

Valid and invalid requests generated from the schema, sent in-process to the ASGI app:
no response may be a 500, and every response must match its documented status, content
type and schema.
"""

from __future__ import annotations

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

from fragment_core.sandbox.app import create_app
from fragment_core.sandbox.settings import SandboxSettings

TOKEN = "schemathesis-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

app = create_app(SandboxSettings(token=SecretStr(TOKEN)))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], database="none"
)


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_sandbox_conforms_to_its_openapi_schema(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
