"""Install packages into a throwaway virtual environment, offline: does a connector
package really install next to fragment-core and get discovered by entry point?

    env = throwaway_venv(tmp_path, REPO_ROOT, PACKAGE_DIR)
    subprocess.run([env / "bin" / "fragment", "connectors", "list", "--json"])

A connector package's install test, in short (:func:`install_package`)::

    installed = install_package(tmp_path, Path(__file__).resolve().parents[1])
    assert installed.imported_from("fragment_tickets")
    rows = installed.connectors("--all")   # ``fragment connectors list --json --all``
    assert rows["tickets"]["package"] == "fragment-tickets"
    assert "api_key" in installed.show("tickets")   # ``fragment connectors show``

Wheels of each project are built with the current environment's pip (no build isolation,
no index: the build backend must be installed here, e.g. hatchling), then installed with
``--no-deps`` into a new venv that sees this environment's third-party libraries through
a plain ``.pth`` path (``.pth`` files of that directory, such as editable installs, are
not run), so the packages under test come from their wheels and nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "InstalledPackage",
    "install_package",
    "offline_env",
    "overlay_venv",
    "run",
    "throwaway_venv",
]


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


def _is_fragment_package(name: str) -> bool:
    """A file of fragment-core or of a connector package (installed or editable)."""
    lowered = name.lower().lstrip("_")
    return lowered.startswith(("fragment", "editable_impl_fragment", "editable__")) or (
        lowered.endswith(".pth") and "fragment" in lowered
    )


def overlay_venv(root: Path) -> Path:
    """A new, empty venv at ``root`` that sees this environment's third-party libraries
    (a plain ``.pth`` path) and has a ``pip`` script, but no fragment package of its own:
    what a person gets from ``python -m venv`` plus the dependencies, without a download.
    """
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    libs = root / "parent-libs"  # this environment's libraries, fragment's packages left out
    libs.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not _is_fragment_package(entry.name):
            (libs / entry.name).symlink_to(entry)
    Path(site.stdout.strip(), "_parent_env.pth").write_text(str(libs))
    pip = root / "bin" / "pip"
    pip.write_text(
        f"#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"
    )
    pip.chmod(0o755)
    return root


def offline_env(venv_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables of a shell "activated" in ``venv_dir`` whose ``pip install``
    uses no index and no build isolation (the build backend comes from this environment).
    """
    env = dict(os.environ if base is None else base)
    env.update(
        PATH=f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv_dir),
        PIP_NO_INDEX="1",
        PIP_NO_BUILD_ISOLATION="0",  # pip reads "0" as: do not isolate the build
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    env.pop("PYTHONHOME", None)
    return env


@dataclass(frozen=True)
class InstalledPackage:
    """A throwaway venv holding fragment-core and one connector package, from their wheels."""

    env_dir: Path
    cwd: Path

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """``python -c code`` in the venv."""
        return run(self.env_dir / "bin" / "python", "-c", code, cwd=self.cwd)

    def fragment(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The venv's ``fragment`` command, run in a directory holding no config."""
        return run(self.env_dir / "bin" / "fragment", *args, cwd=self.cwd)

    def imported_from(self, module: str) -> bool:
        """Whether ``module`` is imported from the venv (its wheel), not from elsewhere."""
        where = self.python(f"import {module} as m; print(m.__file__)")
        assert where.returncode == 0, where.stderr
        return Path(where.stdout.strip()).is_relative_to(self.env_dir)

    def connectors(self, *flags: str) -> dict[str, dict[str, Any]]:
        """Rows of ``fragment connectors list --json FLAGS`` (``"--all"``), by name."""
        listed = self.fragment("connectors", "list", "--json", *flags)
        assert listed.returncode == 0, listed.stderr
        return {row["name"]: row for row in json.loads(listed.stdout)}

    def show(self, name: str) -> str:
        """The text of ``fragment connectors show name``."""
        shown = self.fragment("connectors", "show", name)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout


def install_package(
    root: Path, package_dir: Path, core_dir: Path | None = None
) -> InstalledPackage:
    """Wheels of fragment-core (``core_dir``; default: the repository holding
    ``plugins/<package_dir>``) and of ``package_dir`` in a new venv under ``root``."""
    core = core_dir if core_dir is not None else package_dir.resolve().parents[1]
    return InstalledPackage(env_dir=throwaway_venv(root, core, package_dir), cwd=root)
