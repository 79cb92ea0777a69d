"""fragment-hubspot installs alone from its wheel next to fragment-core, and is discovered."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=180, cwd=cwd
    )


def test_wheel_installs_next_to_fragment_core_and_registers_hubspot(tmp_path: Path) -> None:
    # wheels of both distributions, built offline; a fresh venv that sees this environment's
    # third-party libraries through a plain .pth path (editable installs there are not run)
    wheels = tmp_path / "wheels"
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "-q", "-w", wheels, REPO, PLUGIN,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(site.stdout.strip(), "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"])
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", *sorted(wheels.glob("*.whl")),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    where = run(python, "-c", "import fragment_hubspot; print(fragment_hubspot.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stderr

    listed = run(env_dir / "bin" / "fragment", "connectors", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["hubspot"]["package"] == "fragment-hubspot"
    assert set(rows["hubspot"]["capabilities"]) == {"incremental", "write_back"}
    shown = run(env_dir / "bin" / "fragment", "connectors", "show", "hubspot", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "access_token" in shown.stdout and "search_result_cap" in shown.stdout
