"""docs/getting-started.md, executed: every command of its ``bash`` blocks, in order, in
one shell, in a fresh virtual environment, from the repository's root folder.

What the test supplies is what a reader has: a new venv, activated (one that sees this
environment's third-party libraries, so nothing is downloaded: pip runs with no index
and no build isolation), a home folder of its own, and a second terminal for background
commands (a command ending in ``&`` is waited for until its port listens). The page's
sandbox port, 8765, is replaced by a free one so parallel runs do not collide.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from fragment_core.testing.install import offline_env, overlay_venv

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "getting-started.md"
PAGE_PORT = "8765"

_WAIT_FOR_PORT = """\
_wait_for_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}
"""


def bash_commands(markdown: str) -> list[str]:
    """The command lines of the ``bash`` fenced blocks of ``markdown``, in order."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.rstrip())
    return commands


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _script(commands: list[str], port: str) -> str:
    lines = ["set -euo pipefail", _WAIT_FOR_PORT, f"cd {REPO}"]
    for command in commands:
        lines.append(f"echo '$ {command.replace(chr(39), '')}' >&2")
        lines.append(command)
        if command.rstrip().endswith("&"):
            lines.append(f"_wait_for_port {port}")
    return "\n".join(lines) + "\n"


def test_the_page_has_the_commands_a_new_user_needs() -> None:
    commands = bash_commands(PAGE.read_text())
    starts = [c.split("#")[0].strip() for c in commands]
    assert starts[0].startswith("pip install ./")  # install from the repository first
    for needed in ("fragment init", "fragment sync backlog", "fragment status", "kill %1"):
        assert any(s.startswith(needed) for s in starts), needed
    assert all(not re.search(r"pip install fragment-", c) for c in commands), (
        "the packages are not published yet: install them from the repository"
    )


@pytest.mark.slow
def test_every_command_of_getting_started_runs_in_order(tmp_path: Path) -> None:
    port = _free_port()
    commands = [c.replace(PAGE_PORT, port) for c in bash_commands(PAGE.read_text())]
    venv = overlay_venv(tmp_path / "venv")
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FRAGMENT", "HUBSPOT"))}
    env = offline_env(venv, {**base, "HOME": str(home), "COLUMNS": "120"})
    proc = subprocess.Popen(
        ["bash", "-c", _script(commands, port)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=240)
    finally:  # the background sandbox is in the session too: never leave it running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    ran = [line[2:] for line in err.splitlines() if line.startswith("$ ")]
    assert proc.returncode == 0, f"failed after: {ran[-1] if ran else '-'}\n{out}\n{err}"
    assert len(ran) == len(commands)
    trial = home / "fragment-trial"
    assert "C-0002" not in (trial / "backlog.csv").read_text()
    assert "backlog (file, full): ok" in out
    assert re.search(r"^  created +5 *$", out, re.M) and re.search(r"^  closed +1 *$", out, re.M)
    assert (trial / "crm.toml").is_file()
