"""A fake internal back-office API, the vendor of the built-in ``http`` connector.

Open tickets, offset-paged (``GET /tickets?offset=&limit=`` answers ``{"items": [...],
"total": n}``); ``PATCH /tickets/{id}`` completes one. Completions are counted twice:
every call (:attr:`FakeBackoffice.calls`) and every *effect* (:attr:`FakeBackoffice.effects`:
a call with an ``Idempotency-Key`` already seen for that ticket is the same effect, as at
any API with idempotency keys). :meth:`FakeBackoffice.source_options` is the
``[sources.options]`` block that points the ``http`` connector at it. Used by the
reliability tests and ``bench/soak.py``; a starting point for tests of an in-house API.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from fragment_core.testing.fakeapi import FakeAPI, FakeRequest, FakeResponse


class FakeBackoffice:
    """Tickets ``{id: "open" | "done" | anything else}``, served by a :class:`FakeAPI`.

    ``token`` is the bearer token it accepts; ``prefix`` and ``digits`` shape the ids
    (``T0000``); ``effect_delay`` is how long a completion takes (so a killed process
    can land mid-way). Start it as a context manager (``with office.api:``).
    """

    def __init__(
        self,
        count: int,
        *,
        token: str,
        prefix: str = "T",
        digits: int = 4,
        effect_delay: float = 0.0,
        name: str = "backoffice",
    ) -> None:
        self.api = FakeAPI(name)
        self.token, self.prefix, self.digits = token, prefix, digits
        self.tickets = {self.ticket_id(i): "open" for i in range(count)}
        self.next_id = count
        self.calls: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self.keys: dict[str, set[str]] = {}

        @self.api.route("GET", "/tickets")
        def tickets(req: FakeRequest) -> Any:
            if req.headers.get("authorization") != f"Bearer {self.token}":
                return FakeResponse(status=401, json={"error": "bad token"})
            rows = [{"id": k, "subject": f"Ticket {k}", "rev": 1} for k in self.open_ids()]
            offset, limit = int(req.query["offset"]), int(req.query["limit"])
            return {"items": rows[offset : offset + limit], "total": len(rows)}

        @self.api.route("PATCH", "/tickets/{ticket_id}")
        async def close(req: FakeRequest) -> Any:
            ticket = req.path_params["ticket_id"]
            key = req.headers.get("idempotency-key", "")
            self.calls[ticket] += 1
            if effect_delay:
                await asyncio.sleep(effect_delay)
            known = self.keys.setdefault(ticket, set())
            if key not in known:  # the same key again is the same effect
                known.add(key)
                self.effects[ticket] += 1
            self.tickets[ticket] = "done"
            return {"id": ticket, "status": "done"}

    def ticket_id(self, index: int) -> str:
        """The id of the ``index``-th ticket (``T0007``)."""
        return f"{self.prefix}{index:0{self.digits}d}"

    def add(self, count: int) -> list[str]:
        """Open ``count`` new tickets; return their ids."""
        added = []
        for _ in range(count):
            added.append(self.ticket_id(self.next_id))
            self.tickets[added[-1]] = "open"
            self.next_id += 1
        return added

    def open_ids(self) -> list[str]:
        """The ids of the open tickets, sorted."""
        return sorted(k for k, v in self.tickets.items() if v == "open")

    def write_backs(self) -> int:
        """Completion calls received (effects or not)."""
        return sum(self.calls.values())

    def source_options(self, token_env: str, *, page: int = 100, extra: str = "") -> str:
        """The ``[sources.options]`` block of an ``http`` source reading this API, the
        token taken from the environment variable ``token_env``; ``extra``: more lines."""
        return (
            "[sources.options]\n"
            f'base_url = "{self.api.base_url}"\n'
            f'auth = {{type = "bearer", token = "${{{token_env}}}"}}\n'
            'backlog = {path = "/tickets", records_path = "items"}\n'
            f'pagination = {{type = "offset", limit = {page}, total_path = "total"}}\n'
            'mapping = {external_id = "id", title = "subject", custom = {rev = "rev"}}\n'
            'write_back = {method = "PATCH", path = "/tickets/{external_id}", '
            'body = {status = "done"}}\n' + extra
        )
