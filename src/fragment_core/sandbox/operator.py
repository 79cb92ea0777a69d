"""The operator page at ``/``: tasks by status, with Start and Complete buttons.

Server-rendered HTML and plain forms, no JavaScript. These routes are for the person
running the sandbox locally and take no token (the API under ``/api/v1`` does); the
outcome typed when completing a task lands in the task's ``form_data.outcome``.
"""

from __future__ import annotations

import html
import uuid
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from fragment_core.sandbox import tasks
from fragment_core.sandbox.schemas import TaskPatch
from fragment_core.sandbox.store import TaskStore
from fragment_core.task import TaskStatus

PAGE_LIMIT = 200

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
section{margin-bottom:2rem}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}
form{display:inline}input[type=text]{width:14rem}small{color:#666}
"""


def _row(task: dict[str, object]) -> str:
    uid = html.escape(str(task["uid"]))
    fields = task["fields"] if isinstance(task["fields"], dict) else {}
    title = html.escape(str(fields.get("title", "")))
    url = fields.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        title = f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{title}</a>'
    source = html.escape(str(fields.get("sync_source", "")))
    due = html.escape(str(task.get("due_at", "")))
    actions = ""
    if task["status"] == TaskStatus.TODO.value:
        actions += (
            f'<form method="post" action="/operator/tasks/{uid}/start">'
            '<button type="submit">Start</button></form> '
        )
    if task["status"] != TaskStatus.DONE.value:
        actions += (
            f'<form method="post" action="/operator/tasks/{uid}/complete">'
            '<input type="text" name="outcome" placeholder="outcome (optional)"> '
            '<button type="submit">Complete</button></form>'
        )
    else:
        form_data = task.get("form_data") or {}
        outcome = form_data.get("outcome") if isinstance(form_data, dict) else None
        actions = html.escape(str(outcome)) if outcome else "<small>done</small>"
    return (
        f"<tr><td>{title}<br><small>{uid}</small></td><td>{source}</td>"
        f"<td>{due}</td><td>{actions}</td></tr>"
    )


def render_page(store: TaskStore) -> str:
    """The whole operator page."""
    sections = []
    for status in TaskStatus:
        rows = store.by_status(status.value, PAGE_LIMIT)
        body = "".join(_row(task) for task in rows) or '<tr><td colspan="4">none</td></tr>'
        sections.append(
            f"<section><h2>{status.value}</h2><table><tr><th>Task</th><th>Source</th>"
            f"<th>Due</th><th></th></tr>{body}</table></section>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Fragment sandbox</title>"
        f"<style>{_STYLE}</style></head><body><h1>Fragment sandbox: operator view</h1>"
        f"<p><small>Showing up to {PAGE_LIMIT} unarchived tasks per status.</small></p>"
        + "".join(sections)
        + "</body></html>"
    )


def build_operator_router(store: TaskStore) -> APIRouter:
    """The page and its two form targets (not part of the API schema)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return render_page(store)

    async def change(uid: uuid.UUID, body: TaskPatch) -> RedirectResponse:
        old = store.get(str(uid))
        if old is None:
            raise HTTPException(404, f"no task with uid {uid}")
        task = tasks.patch(old, body, tasks.now_text())
        if task is not old:
            store.save_many([task])
        return RedirectResponse("/", status_code=303)

    @router.post("/operator/tasks/{uid}/start")
    async def start(uid: uuid.UUID) -> RedirectResponse:
        return await change(uid, TaskPatch(status=TaskStatus.STARTED))

    @router.post("/operator/tasks/{uid}/complete")
    async def complete(uid: uuid.UUID, request: Request) -> RedirectResponse:
        form = parse_qs((await request.body()).decode(errors="replace"))
        outcome = (form.get("outcome") or [""])[0].strip()
        old = store.get(str(uid))
        form_data = dict((old or {}).get("form_data") or {})
        if outcome:
            form_data["outcome"] = outcome
        patch = TaskPatch(status=TaskStatus.DONE)
        if outcome:
            patch = TaskPatch(status=TaskStatus.DONE, form_data=form_data)
        return await change(uid, patch)

    return router
