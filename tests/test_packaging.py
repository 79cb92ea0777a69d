"""Every package builds a wheel and an sdist that `twine check --strict` accepts, and the
wheels install offline into a fresh venv (what .ci/run checks with scripts/build-dists)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from fragment_core.testing.install import offline_env, overlay_venv, run

REPO = Path(__file__).resolve().parents[1]


def _projects() -> list[str]:
    names = ["fragment_core"]
    for pyproject in sorted((REPO / "plugins").glob("*/pyproject.toml")):
        names.append(pyproject.parent.name.replace("-", "_"))
    return names


def test_build_dists_builds_and_checks_every_wheel_and_sdist(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    built = subprocess.run(
        [REPO / "scripts" / "build-dists", out], capture_output=True, text=True, timeout=300,
        env={"PYTHON_FOR_BUILD": sys.executable, "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    for name in _projects():
        assert len(list(out.glob(f"{name}-*-py3-none-any.whl"))) == 1, name
        assert len(list(out.glob(f"{name}-*.tar.gz"))) == 1, name
    assert built.stdout.count("PASSED") == 2 * len(_projects()), built.stdout
    assert "FAILED" not in built.stdout
    (sdist,) = out.glob("fragment_core-*.tar.gz")
    with tarfile.open(sdist) as archive:
        top = {Path(m).parts[1] for m in archive.getnames() if len(Path(m).parts) > 1}
    assert "plugins" not in top and {"src", "README.md", "pyproject.toml"} <= top
    venv = overlay_venv(tmp_path / "venv")
    installed = run(
        venv / "bin" / "pip", "install", "-q", "--no-deps", *sorted(out.glob("*.whl")),
        env=offline_env(venv),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    version = run(venv / "bin" / "fragment", "--version", env=offline_env(venv))
    assert version.returncode == 0 and version.stdout.startswith("fragment, version")


def test_ci_runs_build_dists() -> None:
    assert "./scripts/build-dists" in (REPO / ".ci" / "run").read_text()
