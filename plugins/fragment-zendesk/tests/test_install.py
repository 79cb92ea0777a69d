"""fragment-zendesk installs alone from its wheel next to fragment-core, and is discovered."""

from __future__ import annotations

import json
from pathlib import Path

from fragment_core.testing.install import run, throwaway_venv

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]


def test_wheel_installs_next_to_fragment_core_and_registers_zendesk(tmp_path: Path) -> None:
    # wheels of both distributions, built offline; a fresh venv that sees this environment's
    # third-party libraries through a plain .pth path (editable installs there are not run)
    env_dir = throwaway_venv(tmp_path, REPO, PLUGIN)
    python = env_dir / "bin" / "python"

    where = run(python, "-c", "import fragment_zendesk; print(fragment_zendesk.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stderr

    listed = run(env_dir / "bin" / "fragment", "connectors", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["zendesk"]["package"] == "fragment-zendesk"
    assert set(rows["zendesk"]["capabilities"]) == {"incremental", "write_back"}
    shown = run(env_dir / "bin" / "fragment", "connectors", "show", "zendesk", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "subdomain" in shown.stdout and "solve_status" in shown.stdout
