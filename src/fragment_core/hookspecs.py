"""Every hook of fragment-core, typed and documented. All hooks are prefixed ``fragment_``.

Implement them in a module registered under the ``fragment`` entry-point group::

    # pyproject.toml
    [project.entry-points.fragment]
    my_plugin = "my_package.plugin"

    # my_package/plugin.py
    from fragment_core import hookimpl

    @hookimpl
    def fragment_transform_task(task, record, source):
        ...

The reference with an example per hook is docs/hooks.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import pluggy

if TYPE_CHECKING:
    from fragment_core.config import SourceSettings
    from fragment_core.connector import Connector, Record
    from fragment_core.reports import SyncReport, WriteBackOutcome
    from fragment_core.task import RemoteTask, Task

PROJECT = "fragment"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register connector classes by calling ``register(ConnectorClass)`` for each.

    Built-in connectors (``file``, ``http``) register through this same hook. Two classes
    claiming one ``name`` is an error naming both packages.
    """


@hookspec(firstresult=True)
def fragment_transform_task(
    task: Task, record: Record, source: SourceSettings
) -> Task | Literal[False] | None:
    """Change or drop the task mapped from ``record`` before it is planned.

    Return a (modified) :class:`~fragment_core.task.Task` to replace it, ``None`` to leave
    it as it is, or ``False`` to drop it (a dropped task is treated as absent from the
    backlog). Implementations chain: each receives the previous one's result, in pluggy's
    call order (``tryfirst``/``trylast`` to steer it; otherwise the plugin registered last
    runs first). A ``wrapper=True`` implementation wraps the whole chain: ``result = yield``
    gives it the final task (or ``False`` when dropped), and what it returns is the result.
    """


@hookspec
def fragment_sync_finished(report: SyncReport) -> None:
    """Observe a finished run of one source (also dry runs and failed runs)."""


@hookspec
def fragment_task_written_back(task: RemoteTask, outcome: WriteBackOutcome) -> None:
    """Observe a write-back attempt that finished, successfully (``outcome.ok``) or not."""
