"""fragment-complyadvantage installs alone from its wheel next to fragment-core, and is
discovered: `fragment connectors list --all` no longer calls it "not installed"."""

from __future__ import annotations

import json
from pathlib import Path

from fragment_core.testing.install import run, throwaway_venv

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]


def test_wheel_installs_next_to_fragment_core_and_registers_both_connectors(
    tmp_path: Path,
) -> None:
    env_dir = throwaway_venv(tmp_path, REPO, PLUGIN)
    python = env_dir / "bin" / "python"
    fragment = env_dir / "bin" / "fragment"

    where = run(python, "-c", "import fragment_complyadvantage as m; print(m.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stderr

    listed = run(fragment, "connectors", "list", "--all", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    for name in ("complyadvantage", "complyadvantage-mesh"):
        assert rows[name]["package"] == "fragment-complyadvantage", rows[name]
        assert rows[name]["installed"] is True, rows[name]
        assert set(rows[name]["capabilities"]) == {"incremental", "write_back"}
    shown = run(fragment, "connectors", "show", "complyadvantage-mesh", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "decision_stage" in shown.stdout and "realm" in shown.stdout
