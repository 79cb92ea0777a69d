"""The file connector shares its file: write-backs lock, re-read and replace atomically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from fragment_core.connector import Completion
from fragment_core.connectors.file import FileConfig, FileConnector, lock_path, write_sample
from fragment_core.task import RemoteTask

WRITE_BACKS = 150
APPENDED = 70


def _complete(c: FileConnector, external_id: str) -> str | None:
    uid = uuid.uuid4()
    when = datetime(2025, 5, 6, tzinfo=UTC)
    return c.on_complete(RemoteTask(uid=uid), Completion("kyc", external_id, uid, when))


def _appender(path: Path, count: int) -> subprocess.Popen[bytes]:
    """Another program: appends ``count`` rows, each under ``flock <file>.lock`` (the
    shell recipe of the docs)."""
    script = textwrap.dedent(
        f"""
        for i in $(seq 1 {count}); do
          flock {lock_path(path)} sh -c "printf 'X-%04d,Appended %d,,,,\\n' $i $i >> {path}"
          sleep 0.004
        done
        """
    )
    return subprocess.Popen(["sh", "-c", script])


def test_rows_appended_under_the_lock_survive_concurrent_write_backs(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "backlog.csv", WRITE_BACKS)
    c = FileConnector(FileConfig(path=path), source="kyc")
    ids = [f"C-{n:04d}" for n in range(1, WRITE_BACKS + 1)]
    writer = _appender(path, APPENDED)
    try:
        while "X-0001" not in path.read_text():  # the writer has begun
            time.sleep(0.002)
        chunks = [ids[i::3] for i in range(3)]
        threads = [
            threading.Thread(target=lambda ch=ch: [_complete(c, i) for i in ch]) for ch in chunks
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert writer.wait(timeout=60) == 0
    finally:
        writer.kill()
    _, rows = c.read_rows()
    by_id = {r["id"]: r for r in rows}
    appended = [f"X-{n:04d}" for n in range(1, APPENDED + 1)]
    assert [i for i in appended if i not in by_id] == []  # every appended row is there
    assert [i for i in ids if by_id[i]["status"] != "done"] == []  # every write-back landed
    assert len(rows) == WRITE_BACKS + APPENDED
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_killed_write_back_leaves_the_file_whole_and_no_temporary(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "backlog.jsonl", 400)
    loop = textwrap.dedent(
        f"""
        import uuid
        from datetime import UTC, datetime
        from pathlib import Path
        from fragment_core.connector import Completion
        from fragment_core.connectors.file import FileConfig, FileConnector
        from fragment_core.task import RemoteTask
        c = FileConnector(FileConfig(path=Path({str(path)!r})), source="kyc")
        print("ready", flush=True)
        n = 0
        while True:
            n = n % 400 + 1
            uid = uuid.uuid4()
            done = datetime(2025, 5, 6, tzinfo=UTC)
            c.on_complete(RemoteTask(uid=uid), Completion("kyc", f"C-{{n:04d}}", uid, done))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    c = FileConnector(FileConfig(path=path), source="kyc")
    _, rows = c.read_rows()
    assert len(rows) == 400 and not any("_error" in r for r in rows)  # never a torn file
    _complete(c, "C-0001")  # the next write-back clears what the killed one left
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_stale_temporary_is_removed_by_the_next_write_back_or_read(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "backlog.csv", 3)
    c = FileConnector(FileConfig(path=path), source="kyc")
    stale = tmp_path / ".backlog.csv.abc123.tmp"
    stale.write_text("half a file")
    _complete(c, "C-0002")
    assert not stale.exists()
    stale.write_text("half a file")
    assert len(list(c.fetch_backlog())) == 2  # the next sync's read clears it too
    assert not stale.exists()


def test_the_lock_is_held_during_a_write_back(tmp_path: Path) -> None:
    """A program holding the lock keeps write-backs waiting (they honour each other)."""
    path = write_sample(tmp_path / "backlog.csv", 3)
    holder = subprocess.Popen(
        ["flock", str(lock_path(path)), "sh", "-c", "echo held; sleep 0.6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    _complete(FileConnector(FileConfig(path=path), source="kyc"), "C-0001")
    assert time.monotonic() - start >= 0.3
    holder.wait(timeout=10)
