"""A local stand-in of the Fragment Tasks API (FastAPI + SQLite).

Start one with ``fragment sandbox`` or, from Python, with :func:`run_sandbox`::

    with run_sandbox(token="t") as sandbox:
        client = sandbox.client()
"""

from fragment_core.sandbox.app import create_app
from fragment_core.sandbox.runner import SandboxHandle, run_sandbox
from fragment_core.sandbox.settings import RateLimit, SandboxSettings

__all__ = ["RateLimit", "SandboxHandle", "SandboxSettings", "create_app", "run_sandbox"]
