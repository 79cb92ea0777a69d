"""A throwaway PostgreSQL server on loopback, for tests of Postgres state.

The server binaries come from the system (``initdb`` on ``PATH`` or the Debian layout under
``/usr/lib/postgresql``) or, where none is installed, from the ``pgserver`` wheel, which
bundles them; so a machine with only Python runs the Postgres tests too. The cluster uses
password authentication over TCP, so a wrong password is an error a test can provoke.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["PostgresServer", "ServerBinaries", "find_server_binaries", "running_postgres"]

Source = Literal["auto", "system", "pgserver"]
_OS_USER = "fragment-pg"  # created for the server when tests run as root without a postgres user


@dataclass(frozen=True)
class ServerBinaries:
    """Where ``initdb`` and ``pg_ctl`` were found, and from what (``system`` or ``pgserver``)."""

    initdb: str
    pg_ctl: str
    origin: str


@dataclass(frozen=True)
class PostgresServer:
    """A running server: a SQLAlchemy URL with its password, and its parts."""

    url: str
    host: str
    port: int
    user: str
    password: str
    binaries: ServerBinaries


def _system_binaries() -> ServerBinaries | None:
    def find(name: str) -> str | None:
        found = shutil.which(name)
        if found:
            return found
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        return candidates[-1] if candidates else None

    initdb, pg_ctl = find("initdb"), find("pg_ctl")
    if initdb and pg_ctl:
        return ServerBinaries(initdb, pg_ctl, "system")
    return None


def _pgserver_binaries() -> ServerBinaries | None:
    # located, not imported: importing pgserver starts nothing but warns about XDG dirs
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    initdb, pg_ctl = bin_dir / "initdb", bin_dir / "pg_ctl"
    if initdb.exists() and pg_ctl.exists():
        return ServerBinaries(str(initdb), str(pg_ctl), "pgserver")
    return None


def find_server_binaries(source: Source = "auto") -> ServerBinaries:
    """The server binaries to use: the system's first, else the ``pgserver`` wheel's.

    Raises:
        RuntimeError: neither is installed (the message says what to install).
    """
    found = None
    if source in ("auto", "system"):
        found = _system_binaries()
    if found is None and source in ("auto", "pgserver"):
        found = _pgserver_binaries()
    if found is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install the 'postgresql' "
            "system package or `pip install pgserver` (part of fragment-core's dev extra), "
            "or set FRAGMENT_TEST_POSTGRES_URL to an existing server"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_os_user() -> list[str]:
    """The ``runuser`` prefix that runs the server as a non-root user (postgres refuses root)."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", _OS_USER):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _OS_USER],
        check=True,
        capture_output=True,
    )
    return ["runuser", "-u", _OS_USER, "--"]


def _readable_copy(binaries: ServerBinaries, base: Path) -> ServerBinaries:
    """The wheel's server, copied where the server's user can run it (a venv may sit
    below a folder only root can enter)."""
    source = Path(binaries.initdb).parent.parent  # .../pgserver/pginstall
    wheel = base / "pgwheel"
    target = wheel / "pgserver" / "pginstall"
    shutil.copytree(source, target, symlinks=True)
    libs = source.parent.parent / "pgserver.libs"  # the binaries' rpath: $ORIGIN/../../../
    if libs.is_dir():
        shutil.copytree(libs, wheel / "pgserver.libs", symlinks=True)
    for path in [base, *wheel.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        runnable = path.is_dir() or mode & 0o100
        path.chmod(mode | 0o444 | (0o111 if runnable else 0))
    return ServerBinaries(
        str(target / "bin" / "initdb"), str(target / "bin" / "pg_ctl"), binaries.origin
    )


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        if log is not None and log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {detail}")


@contextmanager
def running_postgres(
    base: Path | None = None, *, source: Source = "auto", user: str = "fragment"
) -> Iterator[PostgresServer]:
    """Start a server in a fresh data directory, yield it, stop it (immediate mode).

    Args:
        base: a directory for the data and the log; a new temporary one by default (as root,
            always a new world-readable one, since the server runs as another user).
        source: where the binaries come from (see :func:`find_server_binaries`).
        user: the database superuser to create; its password is random per server.
    """
    binaries = find_server_binaries(source)
    run_as = _server_os_user()
    owned = base is None or bool(run_as)
    if owned:
        # Not under pytest's basetemp: a pytest session start resets the per-user temp root
        # to 0700, which would lock the server's user out when another pytest runs at once.
        base = Path(tempfile.mkdtemp(prefix="fragment-pg-"))
        os.chmod(base, 0o777)
    assert base is not None
    if run_as and binaries.origin == "pgserver":
        binaries = _readable_copy(binaries, base)
    data, log, pwfile = base / "data", base / "pg.log", base / "pwfile"
    password = secrets.token_urlsafe(16)
    pwfile.write_text(password + "\n")
    os.chmod(pwfile, 0o644)
    port = _free_port()
    try:
        initdb = [binaries.initdb, "-D", str(data), "-U", user, "-E", "UTF8"]
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        _run([*run_as, *initdb, *auth], "initdb")
        pwfile.unlink()
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = [binaries.pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]
        _run([*run_as, *start], "pg_ctl start", log)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            url = f"postgresql+psycopg://{user}:{password}@127.0.0.1:{port}/postgres"
            yield PostgresServer(url, "127.0.0.1", port, user, password, binaries)
        finally:
            stop = [binaries.pg_ctl, "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run([*run_as, *stop], capture_output=True)
    finally:
        if owned:
            shutil.rmtree(base, ignore_errors=True)
