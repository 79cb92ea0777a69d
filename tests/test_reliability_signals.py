"""SIGTERM at awkward moments: while ``fragment`` is still starting (before its handler is
installed) and during a long run of write-backs. Either way it ends within a bounded time,
exit 0, and nothing is lost: the write-backs not started stay due for the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fragment_core.sandbox.runner import run_sandbox
from fragment_core.task import task_uid
from fragment_core.testing.backoffice import FakeBackoffice

SOURCE = "termed"
TOKEN = "backoffice-token-7a1d-secret"


def _config(tmp_path: Path, sandbox: Any, office: FakeBackoffice) -> Path:
    config = tmp_path / "fragment.toml"
    (tmp_path / "token").write_text(sandbox.token)
    config.write_text(
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f'[state]\nurl = "sqlite:///{(tmp_path / "state.db").as_posix()}"\n'
        f'[[sources]]\nname = "{SOURCE}"\nconnector = "http"\nevery = "1h"\n'
        + office.source_options("BACKOFFICE_TOKEN")
    )
    return config


def _command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "fragment_core", "--config", str(config), *args]


ENV = {**os.environ, "BACKOFFICE_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _has_loaded(pid: int, library: str) -> bool:
    return library in Path(f"/proc/{pid}/maps").read_text()


def test_sigterm_while_starting_ends_with_exit_0(tmp_path: Path) -> None:
    office = FakeBackoffice(50, token=TOKEN)
    with office.api, run_sandbox() as sandbox:
        config = _config(tmp_path, sandbox, office)
        process = subprocess.Popen(
            _command(config, "run"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # The earliest moment a process can handle a signal: once SIGTERM is caught (its
        # handler installed, /proc/PID/status). Sent then, the CLI is still importing.
        deadline = time.monotonic() + 30
        while not _catches_sigterm(process.pid):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.001)
        cli_loaded = _has_loaded(process.pid, "pydantic_core")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, (process.returncode, out + err)
        assert b"Traceback" not in err
        assert not cli_loaded, "SIGTERM was caught only once the CLI was imported"
        # nothing lost: the next run does the whole sync
        done = subprocess.run(_command(config, "sync", SOURCE), env=ENV, capture_output=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_sigterm_during_long_write_backs_ends_in_bounded_time(tmp_path: Path) -> None:
    office = FakeBackoffice(60, token=TOKEN, effect_delay=0.25)
    with office.api, run_sandbox() as sandbox:
        config = _config(tmp_path, sandbox, office)
        done = subprocess.run(_command(config, "sync", SOURCE), env=ENV, capture_output=True)
        assert done.returncode == 0, done.stdout + done.stderr
        completed = sorted(office.tickets)[:12]  # 12 x 0.25 s = 3 s of write-backs
        with sandbox.client() as client:
            client.patch_tasks(
                [{"uid": str(task_uid(SOURCE, eid)), "status": "DONE"} for eid in completed]
            )
        process = subprocess.Popen(
            _command(config, "run"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while office.write_backs() < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no write-back started"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        at_signal = office.write_backs()
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, (out + err).decode()
        # bounded by what it does, not by the clock: at most the write-back being sent
        # when the signal came starts after it (each one takes 0.25 s)
        assert office.write_backs() <= at_signal + 1, "write-backs went on after SIGTERM"
        assert office.write_backs() < len(completed)  # stopped early...
        for _ in range(3):  # ...and the rest are written back by the next runs
            again = subprocess.run(_command(config, "sync", SOURCE), env=ENV, capture_output=True)
            if again.returncode == 0:
                break
        assert again.returncode == 0, again.stdout + again.stderr
        assert sum(office.effects.values()) == len(completed)  # each exactly once
