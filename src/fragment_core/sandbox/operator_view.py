"""The HTML of the sandbox's operator page: counts per status, filters (source, status,
search), one page of tasks with their external id and due date, and who closed each
done task (the sync, through the API, or an operator, on this page).

Everything is queried server-side (:meth:`TaskStore.operator_page`), so a sandbox with
50,000 tasks pages as fast as one with 50.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from fragment_core.sandbox.store import OperatorQuery, TaskStore
from fragment_core.task import SOURCE_FIELD, TaskStatus

__all__ = ["LOGOUT_PATH", "PAGE_SIZE", "STATUS_FILTERS", "PageRequest", "render_page"]

#: Path of the sign-out route (a POST carrying the CSRF token).
LOGOUT_PATH = "/operator/logout"
#: Tasks per page, by default and at most.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: The status filters: ``open`` (the default) is TODO and STARTED.
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "open": (TaskStatus.TODO.value, TaskStatus.STARTED.value),
    **{status.value: (status.value,) for status in TaskStatus},
    "all": (),
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}
form{display:inline}input[type=text]{width:14rem}small{color:#666}
nav{margin:.5rem 0}nav a,nav strong{margin-right:1rem}
tr.by-operator{background:#e8f5e9}tr.by-sync{background:#eceff1;color:#555}
.badge{font-size:.8rem;padding:.1rem .4rem;border-radius:.3rem;white-space:nowrap}
.by-operator .badge{background:#2e7d32;color:#fff}.by-sync .badge{background:#78909c;color:#fff}
"""


@dataclass(frozen=True)
class PageRequest:
    """The query of ``GET /``: status filter, source, search text, page number and size."""

    status: str = "open"
    source: str = ""
    q: str = ""
    page: int = 1
    size: int = PAGE_SIZE

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PageRequest:
        """Read a query string; unknown or unreadable values fall back to the defaults."""
        status = query.get("status", "open")
        return cls(
            status=status if status in STATUS_FILTERS else "open",
            source=query.get("source", "").strip(),
            q=query.get("q", "").strip()[:200],
            page=max(1, _int(query.get("page"), 1)),
            size=min(MAX_PAGE_SIZE, max(1, _int(query.get("size"), PAGE_SIZE))),
        )

    def href(self, **changes: Any) -> str:
        """The page's URL with ``changes`` (values at their default left out)."""
        values = {**asdict(self), **changes}
        defaults = asdict(PageRequest())
        kept = {k: v for k, v in values.items() if v != defaults[k]}
        return "/?" + urlencode(kept) if kept else "/"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _closed(task: dict[str, Any], closed_by: str | None) -> tuple[str, str]:
    """The row's CSS class and the badge saying who closed the task."""
    if task["status"] != TaskStatus.DONE.value:
        return "", ""
    if closed_by == "operator":
        return "by-operator", '<span class="badge">completed by an operator</span>'
    return "by-sync", '<span class="badge">closed by the sync (API)</span>'


def _actions(task: dict[str, Any], badge: str, csrf: str) -> str:
    uid = html.escape(str(task["uid"]))
    if task["status"] == TaskStatus.DONE.value:
        form_data = task.get("form_data") or {}
        outcome = form_data.get("outcome") if isinstance(form_data, dict) else None
        return f"{badge} {html.escape(str(outcome))}" if outcome else badge
    actions = ""
    if task["status"] == TaskStatus.TODO.value:
        actions += (
            f'<form method="post" action="/operator/tasks/{uid}/start">{csrf}'
            '<button type="submit">Start</button></form> '
        )
    return actions + (
        f'<form method="post" action="/operator/tasks/{uid}/complete">{csrf}'
        '<input type="text" name="outcome" placeholder="outcome (optional)"> '
        '<button type="submit">Complete</button></form>'
    )


def _row(task: dict[str, Any], closed_by: str | None, csrf: str) -> str:
    fields = task["fields"] if isinstance(task["fields"], dict) else {}
    title = html.escape(str(fields.get("title", "")))
    url = fields.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        title = f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{title}</a>'
    css, badge = _closed(task, closed_by)
    cells = [
        f"{title}<br><small>{html.escape(str(task['uid']))}</small>",
        html.escape(str(fields.get("external_id") or "")),
        html.escape(str(fields.get(SOURCE_FIELD) or "")),
        html.escape(str(task.get("due_at") or "")),
        html.escape(str(task["status"])),
        _actions(task, badge, csrf),
    ]
    return f'<tr class="{css}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _filters(request: PageRequest, sources: list[str]) -> str:
    def option(value: str, label: str, current: str) -> str:
        selected = " selected" if value == current else ""
        return f'<option value="{html.escape(value)}"{selected}>{html.escape(label)}</option>'

    source_options = option("", "all sources", request.source) + "".join(
        option(name, name, request.source) for name in sources
    )
    status_options = "".join(option(name, name, request.status) for name in STATUS_FILTERS)
    return (
        '<form method="get" action="/">'
        f'<select name="source" aria-label="source">{source_options}</select> '
        f'<select name="status" aria-label="status">{status_options}</select> '
        f'<input type="text" name="q" value="{html.escape(request.q)}" '
        'placeholder="search title or external id" aria-label="search"> '
        '<button type="submit">Filter</button></form>'
    )


def _counts(request: PageRequest, counts: dict[str, int]) -> str:
    parts = []
    for name in STATUS_FILTERS:
        statuses = STATUS_FILTERS[name] or tuple(counts)
        label = f"{name}: {sum(counts.get(s, 0) for s in statuses):,}"
        if name == request.status:
            parts.append(f"<strong>{label}</strong>")
        else:
            parts.append(f'<a href="{html.escape(request.href(status=name, page=1))}">{label}</a>')
    return f'<nav class="counts">{"".join(parts)}</nav>'


def _pager(request: PageRequest, total: int) -> str:
    pages = max(1, -(-total // request.size))
    first = (request.page - 1) * request.size + 1 if total else 0
    last = min(total, request.page * request.size)
    links = [
        f'<a href="{html.escape(request.href(page=number))}" rel="{label}">{label}</a>'
        for label, number in (
            ("first", 1),
            ("prev", request.page - 1),
            ("next", request.page + 1),
            ("last", pages),
        )
        if 1 <= number <= pages and number != request.page
    ]
    return (
        f'<nav class="pager"><small>{first:,}-{last:,} of {total:,} '
        f"(page {request.page:,} of {pages:,})</small> {' '.join(links)}</nav>"
    )


def render_page(
    store: TaskStore, request: PageRequest | None = None, csrf_token: str = ""
) -> str:
    """The operator page for ``request``; its forms carry ``csrf_token`` and come back here."""
    request = request or PageRequest()
    csrf = sign_out = ""
    if csrf_token:
        token = f'<input type="hidden" name="csrf" value="{html.escape(csrf_token)}">'
        csrf = token + f'<input type="hidden" name="next" value="{html.escape(request.href())}">'
        sign_out = (
            f'<form method="post" action="{LOGOUT_PATH}">{token}'
            '<button type="submit">Sign out</button></form>'
        )
    view = OperatorQuery(STATUS_FILTERS[request.status], request.source or None, request.q)
    rows, total = store.operator_page(
        view, offset=(request.page - 1) * request.size, limit=request.size
    )
    body = "".join(_row(task, closed_by, csrf) for task, closed_by in rows)
    body = body or '<tr><td colspan="6">no task matches</td></tr>'
    pager = _pager(request, total)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Fragment sandbox</title>"
        f"<style>{STYLE}</style></head><body><h1>Fragment sandbox: operator view</h1>"
        f"{sign_out}{_filters(request, store.sources())}"
        f"{_counts(request, store.status_counts(request.source or None))}{pager}"
        "<table><tr><th>Task</th><th>External id</th><th>Source</th><th>Due</th>"
        f"<th>Status</th><th></th></tr>{body}</table>{pager}</body></html>"
    )
