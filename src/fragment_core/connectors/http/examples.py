"""The annotated example printed by ``fragment connectors show http``."""

from __future__ import annotations

import tomllib
from typing import Any

__all__ = ["EXAMPLE_OPTIONS", "EXAMPLE_TOML"]

#: A complete ``[[sources]]`` block using every part of the options, with comments.
EXAMPLE_TOML = """\
[[sources]]
name = "backoffice"                      # part of every task uid: never rename casually
connector = "http"
every = "5m"

[sources.options]
base_url = "https://backoffice.example.com"   # paths below are appended to it
rate_limit = 120                         # requests per minute to this API (optional)
timeout = 30                             # seconds per request
check_path = "/api/health"               # cheap GET for `fragment check` (optional)
headers = { Accept = "application/json" }     # sent with every request; not for secrets

# auth: type = "none" | "bearer" | "basic" | "api_key"
#   bearer:  token = "${BACKOFFICE_TOKEN}"
#   basic:   username = "fragment-sync", password = "${BACKOFFICE_PASSWORD}"
#   api_key: key = "${BACKOFFICE_KEY}", location = "header" | "query", name = "X-API-Key"
[sources.options.auth]
type = "bearer"
token = "${BACKOFFICE_TOKEN}"            # read from the environment, never written here

# the request listing the open backlog (first page)
[sources.options.backlog]
method = "GET"                           # GET, or POST with a JSON body
path = "/api/tickets"
params = { status = "open" }             # query parameters
# body = { filter = { status = "open" } }  # JSON body, for POST searches
records_path = "data"                    # where the records are in the response ("" = body)

# pagination: type = "none" | "page" | "offset" | "cursor" | "link_header" | "next_url"
#   page:        param = "page", start = 1, size_param = "per_page", size = 100,
#                total_pages_path = "meta.pages"
#   offset:      param = "offset", limit_param = "limit", limit = 100, total_path = "total"
#   cursor:      cursor_path = "meta.next", param = "cursor", location = "query" | "body"
#   link_header: rel = "next"
#   next_url:    next_url_path = "links.next"
[sources.options.pagination]
type = "cursor"
cursor_path = "meta.next_cursor"         # where the next cursor is in the response
param = "cursor"                         # sent back as ?cursor=...
max_pages = 10000                        # safety stop

# how a record becomes a task: paths ("customer.name") and templates ("{id}")
[sources.options.mapping]
external_id = "id"                       # required in every record
title_template = "{subject} ({customer.name})"   # or: title = "subject"
url = "https://backoffice.example.com/tickets/{id}"  # the link operators open
due_at = "due_at"                        # ISO 8601 or unix seconds (optional)
updated_at = "updated_at"                # -> external_updated_at (optional)
custom = { customer = "customer.name", amount = "amount" }  # task field -> record path
defaults = { team = "risk-ops" }         # set on every task; fallback for missing custom

# optional: between full fetches, only records changed since the cursor
[sources.options.incremental]
cursor_field = "updated_at"              # the largest value seen becomes the next cursor
param = "updated_since"                  # sent as ?updated_since=<cursor>
params = {}                              # replaces backlog.params: see closed records too
open_field = "status"                    # a changed record is open when status is...
open_values = ["open", "pending"]

# optional: when an operator completes the task
[sources.options.write_back]
method = "PATCH"
path = "/api/tickets/{external_id}"      # also {uid}, {done_at}, {fields.KEY}, {outcome.KEY}
body = { status = "closed", closed_at = "{done_at}", closed_by = "fragment" }
idempotency_header = "Idempotency-Key"   # carries the completion's idempotency key
accept_statuses = [409]                  # "already closed" counts as done
"""


def _options(text: str) -> dict[str, Any]:
    return tomllib.loads(text)["sources"][0]["options"]


#: The same example as a dict (``Connector.example_options``).
EXAMPLE_OPTIONS: dict[str, Any] = _options(EXAMPLE_TOML)
