"""The operator page at ``/`` (see :mod:`.operator_view`): tasks with Start and
Complete buttons, counts per status, filters, search and paging.

Server-rendered HTML and plain forms, no JavaScript; the outcome typed when completing
a task lands in the task's ``form_data.outcome``. Completing a task triggers a real
write-back on the next sync, so the page is guarded like a production admin page:

- **Sign-in.** ``GET /operator/login?token=...`` (the URL the sandbox prints on start;
  the operator token or the API token) sets an HttpOnly, SameSite=Strict session
  cookie and redirects to ``/``. Scripts may instead send ``Authorization: Bearer
  <API token>`` on every request.
- **Host check.** The ``Host`` header must be an IP address, ``localhost`` or a name in
  ``allowed_hosts`` (no DNS rebinding).
- **Same origin.** A POST whose ``Origin`` (or ``Referer``) is another origin, or whose
  ``Sec-Fetch-Site`` is not ``same-origin``/``none``, is refused with 403.
- **CSRF token.** Every form carries the session's ``csrf`` token; a cookie-session POST
  without the right one is refused with 403.
- **Sessions end.** A session lasts ``operator_session_ttl`` (8 hours by default) after
  sign-in; ``POST /operator/logout`` (the page's Sign out button) ends it at once.
"""

from __future__ import annotations

import html
import ipaddress
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fragment_core.sandbox import tasks
from fragment_core.sandbox.operator_view import LOGOUT_PATH, STYLE, PageRequest, render_page
from fragment_core.sandbox.schemas import TaskPatch
from fragment_core.sandbox.settings import SandboxSettings
from fragment_core.sandbox.store import TaskStore
from fragment_core.task import TaskStatus

#: Name of the operator session cookie.
SESSION_COOKIE = "fragment_sandbox_operator"
#: Path of the sign-in route (``?token=...``).
LOGIN_PATH = "/operator/login"

_SIGN_IN_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Fragment sandbox</title>"
    f"<style>{STYLE}</style></head><body><h1>Fragment sandbox: sign in</h1>"
    "<p>{message}</p><p>Open the operator URL the sandbox printed when it started "
    f"(<code>{LOGIN_PATH}?token=...</code>), or run <code>fragment demo --keep-running</code>."
    "</p></body></html>"
)


def _sign_in_page(message: str, status_code: int) -> HTMLResponse:
    return HTMLResponse(_SIGN_IN_PAGE.replace("{message}", html.escape(message)), status_code)


class OperatorGuard:
    """Sessions, host, origin and CSRF checks of the operator routes."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, tuple[str, float]] = {}  # id -> (CSRF token, expiry)

    def valid_login_token(self, token: str) -> bool:
        """The operator token or the API token (compared in constant time)."""
        given = token.encode()
        return any(
            secrets.compare_digest(given, known.get_secret_value().encode())
            for known in (self.settings.operator_token, self.settings.token)
        )

    def new_session(self) -> tuple[str, str]:
        """A new session id and its CSRF token."""
        now = time.monotonic()
        for old in [k for k, (_, expiry) in self.sessions.items() if expiry <= now]:
            del self.sessions[old]
        session, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.sessions[session] = (csrf, now + self.settings.operator_session_ttl)
        return session, csrf

    def end_session(self, request: Request) -> None:
        """Forget the request's session (sign-out)."""
        self.sessions.pop(request.cookies.get(SESSION_COOKIE) or "", None)

    def host_allowed(self, request: Request) -> bool:
        """The Host header names an IP address, localhost, or an allowed host."""
        host = (urlsplit(f"//{request.headers.get('host', '')}").hostname or "").lower()
        if not host:
            return False
        if host == "localhost" or host.endswith(".localhost"):
            return True
        if host in {name.lower() for name in self.settings.allowed_hosts}:
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    @staticmethod
    def same_origin(request: Request) -> bool:
        """Nothing in the request says it comes from another origin."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        host = request.headers.get("host", "").lower()
        for header in ("origin", "referer"):
            value = request.headers.get(header)
            if value is None:
                continue
            parts = urlsplit(value)
            return parts.scheme in ("http", "https") and parts.netloc.lower() == host
        return True

    def bearer_ok(self, request: Request) -> bool:
        """``Authorization: Bearer <API token>`` (for scripts)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = self.settings.token.get_secret_value().encode()
        return scheme.lower() == "bearer" and secrets.compare_digest(token.encode(), expected)

    def session_csrf(self, request: Request) -> str | None:
        """The CSRF token of the request's session, or None without a valid session."""
        session = request.cookies.get(SESSION_COOKIE)
        found = self.sessions.get(session) if session else None
        if found is None:
            return None
        csrf, expiry = found
        if expiry <= time.monotonic():
            del self.sessions[session]  # type: ignore[arg-type]
            return None
        return csrf

    def check_post(self, request: Request, form: dict[str, list[str]]) -> None:
        """Refuse a state-changing request that is cross-site, unsigned-in or forged."""
        if not self.host_allowed(request):
            raise HTTPException(403, "operator page: unexpected Host header")
        if not self.same_origin(request):
            raise HTTPException(403, "operator page: cross-origin request refused")
        if self.bearer_ok(request):
            return
        csrf = self.session_csrf(request)
        if csrf is None:
            raise HTTPException(401, f"operator page: sign in first ({LOGIN_PATH}?token=...)")
        given = (form.get("csrf") or [""])[0]
        if not secrets.compare_digest(given.encode(), csrf.encode()):
            raise HTTPException(403, "operator page: missing or wrong CSRF token")


def build_operator_router(store: TaskStore, settings: SandboxSettings) -> APIRouter:
    """The page, its sign-in and its two form targets (not part of the API schema)."""
    router = APIRouter(include_in_schema=False)
    guard = OperatorGuard(settings)
    _add_session_routes(router, guard)
    _add_page_route(router, store, guard)
    _add_task_action_routes(router, store, guard)
    return router


def _add_session_routes(router: APIRouter, guard: OperatorGuard) -> None:
    """Sign-in (``GET`` :data:`LOGIN_PATH`) and sign-out (``POST`` ``LOGOUT_PATH``)."""

    @router.get(LOGIN_PATH)
    async def login(request: Request, token: str = "") -> Response:
        if not guard.host_allowed(request):
            return _sign_in_page("Unexpected Host header.", 403)
        if not token or not guard.valid_login_token(token):
            return _sign_in_page("That sign-in link is not valid for this sandbox.", 403)
        session, _ = guard.new_session()
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            httponly=True,
            samesite="strict",
            path="/",
            max_age=int(guard.settings.operator_session_ttl),
        )
        return response

    @router.post(LOGOUT_PATH)
    async def logout(request: Request) -> Response:
        await _checked_form(guard, request)
        guard.end_session(request)
        response = _sign_in_page("Signed out.", 200)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response


def _add_page_route(router: APIRouter, store: TaskStore, guard: OperatorGuard) -> None:
    """The page itself at ``/``."""

    @router.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> Response:
        if not guard.host_allowed(request):
            return _sign_in_page("Unexpected Host header.", 403)
        csrf = guard.session_csrf(request)
        if csrf is None and guard.bearer_ok(request):
            csrf = ""
        if csrf is None:
            return _sign_in_page("Sign in to see the tasks.", 401)
        headers = {"X-Frame-Options": "DENY", "Cache-Control": "no-store"}
        wanted = PageRequest.from_query(request.query_params)
        return HTMLResponse(render_page(store, wanted, csrf), headers=headers)


def _add_task_action_routes(router: APIRouter, store: TaskStore, guard: OperatorGuard) -> None:
    """The Start and Complete form targets."""

    @router.post("/operator/tasks/{uid}/start")
    async def start(uid: uuid.UUID, request: Request) -> RedirectResponse:
        form = await _checked_form(guard, request)
        return _change(store, uid, TaskPatch(status=TaskStatus.STARTED), form)

    @router.post("/operator/tasks/{uid}/complete")
    async def complete(uid: uuid.UUID, request: Request) -> RedirectResponse:
        form = await _checked_form(guard, request)
        outcome = (form.get("outcome") or [""])[0].strip()
        patch = _completion(store.get(str(uid)), outcome)
        return _change(store, uid, patch, form)


async def _checked_form(guard: OperatorGuard, request: Request) -> dict[str, list[str]]:
    """The POST's form fields, once the guard let the request through."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    guard.check_post(request, form)
    return form


def _completion(old: dict[str, Any] | None, outcome: str) -> TaskPatch:
    """The patch completing a task; a typed outcome joins its ``form_data``."""
    form_data = dict((old or {}).get("form_data") or {})
    if not outcome:
        return TaskPatch(status=TaskStatus.DONE)
    form_data["outcome"] = outcome
    return TaskPatch(status=TaskStatus.DONE, form_data=form_data)


def _change(
    store: TaskStore, uid: uuid.UUID, body: TaskPatch, form: dict[str, list[str]]
) -> RedirectResponse:
    """Apply an operator's change to the task ``uid`` and send the browser back."""
    old = store.get(str(uid))
    if old is None:
        raise HTTPException(404, f"no task with uid {uid}")
    task = tasks.patch(old, body, tasks.now_text())
    if task is not old:
        store.save_many([task], closed_by="operator")
    return RedirectResponse(_back_to(form), status_code=303)


def _back_to(form: dict[str, list[str]]) -> str:
    """Where a form's POST redirects: the page it came from (``/`` or ``/?...`` of this
    site only, never another one), else ``/``."""
    target = (form.get("next") or ["/"])[0]
    return target if target == "/" or (target.startswith("/?") and "\\" not in target) else "/"
