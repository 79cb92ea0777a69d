"""Client of the Fragment Tasks API.

INTERFACE SKETCH (to be implemented under issue 2). Other modules code against these
signatures.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from fragment_core.task import RemoteTask, Task, TaskStatus


@dataclass
class ItemError:
    """One item of a batch the server refused."""

    uid: uuid.UUID | None
    status: int
    message: str


@dataclass
class BatchResult:
    """Items written, and items refused, by one or more batch requests."""

    items: list[RemoteTask] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


class TasksClient:
    """Synchronous client; thread-safe; one rate budget shared by all its users."""

    def __init__(
        self,
        url: str,
        token: str | SecretStr,
        *,
        rate_limit: int | None = 60,
        batch_size: int = 100,
        timeout: float = 30.0,
    ) -> None:
        raise NotImplementedError

    requests_made: int

    def me(self) -> dict[str, Any]: ...
    def create_task(self, task: Task) -> RemoteTask: ...
    def upsert_task(self, task: Task) -> RemoteTask: ...
    def patch_task(self, uid: uuid.UUID, changes: Mapping[str, Any]) -> RemoteTask: ...
    def get_task(self, uid: uuid.UUID) -> RemoteTask: ...
    def delete_task(self, uid: uuid.UUID) -> None: ...
    def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        updated_after: datetime | None = None,
        fields: Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[RemoteTask]: ...
    def upsert_tasks(self, tasks: Sequence[Task]) -> BatchResult: ...
    def patch_tasks(self, items: Sequence[Mapping[str, Any]]) -> BatchResult: ...
    def close(self) -> None: ...
