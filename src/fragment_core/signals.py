"""SIGTERM before a command is ready for it: remembered, not fatal.

The ``fragment`` entry point calls :func:`install_early` before it imports the CLI (a
second of imports on a slow machine), so a SIGTERM sent by a supervisor right after the
start is not the default "die now": it is remembered, and the command's own handler
(which lets a run finish the chunk in flight) acts on it as soon as it is installed.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

#: Set when SIGTERM arrived before the command installed its own handler.
EARLY_SIGTERM = threading.Event()


def _remember(_signum: int, _frame: Any) -> None:
    EARLY_SIGTERM.set()


def install_early() -> None:
    """Remember a SIGTERM until the command's handler takes over (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _remember)


def early_sigterm() -> bool:
    """Whether a SIGTERM arrived before the command's handler was installed."""
    return EARLY_SIGTERM.is_set()


#: The commands that honour a remembered SIGTERM (they stop cleanly, exit 0).
HONOURING = frozenset({"sync", "run"})


def release_early(command: str | None) -> None:
    """For a command that does not honour a remembered SIGTERM: the default action
    again, and a SIGTERM that already arrived takes effect now (never swallowed)."""
    if command in HONOURING or signal.getsignal(signal.SIGTERM) is not _remember:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if EARLY_SIGTERM.is_set():
        os.kill(os.getpid(), signal.SIGTERM)
