"""Install packages into a throwaway virtual environment, offline: does a connector
package really install next to fragment-core and get discovered by entry point?

    env = throwaway_venv(tmp_path, REPO_ROOT, PACKAGE_DIR)
    subprocess.run([env / "bin" / "fragment", "connectors", "list", "--json"])

Wheels of each project are built with the current environment's pip (no build isolation,
no index: the build backend must be installed here, e.g. hatchling), then installed with
``--no-deps`` into a new venv that sees this environment's third-party libraries through
a plain ``.pth`` path (``.pth`` files of that directory, such as editable installs, are
not run), so the packages under test come from their wheels and nothing is downloaded.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

__all__ = ["run", "throwaway_venv"]


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its text output (3 minutes at most)."""
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=180, cwd=cwd, env=env
    )


def throwaway_venv(root: Path, *projects: Path) -> Path:
    """A new venv under ``root`` with wheels of ``projects`` installed; returns its path.

    Raises :class:`AssertionError` with pip's output when a build or install fails.
    """
    wheels = root / "wheels"
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "-q", "-w", wheels, *projects,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(site.stdout.strip(), "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"])
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", *sorted(wheels.glob("*.whl")),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return env_dir
