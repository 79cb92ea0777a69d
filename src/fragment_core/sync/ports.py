"""What the engine needs of the Tasks API, as one typed seam.

:class:`fragment_core.tasks_api.TasksClient` satisfies :class:`TasksApi`; the planner,
the applier, completion detection and the state rebuild take any object that does
(fleet mode passes its own, tests may pass a recording double).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fragment_core.task import RemoteTask, Task, TaskBody, TaskStatus
    from fragment_core.tasks_api import BatchResult, TasksClient


class TasksApi(Protocol):
    """The Tasks API operations the sync engine calls."""

    url: str
    """The base URL of the Tasks API (recorded in the state as its destination)."""

    def account(self) -> Mapping[str, Any]:
        """The account of the credentials (``GET /accounts/me``), possibly cached: the
        state records it with :attr:`url` as the destination it belongs to."""
        ...

    def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        updated_after: datetime | None = None,
        fields: Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> Iterable[RemoteTask]:
        """Every task matching the filters, page after page (``GET /tasks``)."""
        ...

    def upsert_tasks(self, tasks: Sequence[Task | TaskBody]) -> BatchResult:
        """Create or update tasks by ``uid`` in one batch (``PUT /tasks/batch``)."""
        ...

    def patch_tasks(self, items: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Patch tasks by ``uid`` (``PATCH /tasks/batch``): ``{"uid": ..., "status": "done"}``."""
        ...


if TYPE_CHECKING:

    def _tasks_client_is_a_tasks_api(client: TasksClient) -> TasksApi:
        return client  # mypy fails here if TasksClient stops satisfying TasksApi
