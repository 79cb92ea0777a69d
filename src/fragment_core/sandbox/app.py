"""Assemble the sandbox ASGI app: API routes, operator page, middleware, error bodies."""

from __future__ import annotations

import json
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fragment_core import __version__
from fragment_core.sandbox.api import build_router
from fragment_core.sandbox.faults import ProductionLikeMiddleware, SandboxStats, TokenRevocation
from fragment_core.sandbox.operator import build_operator_router
from fragment_core.sandbox.settings import SandboxSettings
from fragment_core.sandbox.store import TaskStore


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (safe for any input echoed back)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode()


def _validation_body(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for error in exc.errors():
        loc = list(error.get("loc", ()))
        errors.append({"loc": loc, "msg": error.get("msg", ""), "type": error.get("type", "")})
    return {"detail": jsonable_encoder(errors)}


def create_app(settings: SandboxSettings, store: TaskStore | None = None) -> FastAPI:
    """The sandbox app for ``settings`` (its store is ``app.state.store``)."""
    store = store or TaskStore(settings.db)
    stats = SandboxStats()
    app = FastAPI(
        title="Fragment Tasks API sandbox",
        version=__version__,
        description=(
            "A local stand-in of the Fragment Tasks API (fragment-core). "
            "Every route under /api/v1 requires `Authorization: Bearer <token>`."
        ),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.store = store
    app.state.stats = stats
    app.state.settings = settings
    app.include_router(build_router(settings, store))
    app.include_router(build_operator_router(store, settings))

    @app.get("/_sandbox/stats", include_in_schema=False)
    async def sandbox_stats() -> dict[str, Any]:
        return {**stats.snapshot(), "tasks": store.count()}

    revocation = TokenRevocation()
    app.state.token_revocation = revocation

    @app.post("/_sandbox/revoke-token", include_in_schema=False)
    async def revoke_token(request: Request, after_writes: int = 0) -> dict[str, Any]:
        """Revoke the API token now or after ``after_writes`` writes (test aid; the caller
        must hold the token)."""
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        expected = settings.token.get_secret_value()
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), expected):
            raise StarletteHTTPException(401, "missing or invalid bearer token")
        revocation.arm(after_writes)
        return {"revoked": revocation.revoked, "after_writes": after_writes}

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        return AsciiJSONResponse(_validation_body(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return AsciiJSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_middleware(
        ProductionLikeMiddleware, settings=settings, stats=stats, revocation=revocation
    )
    return app
