"""fragment-stripe installs alone from its wheel next to fragment-core, and is discovered."""

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

    where = run(python, "-c", "import fragment_stripe.testing as t; print(t.__file__, t.SPEC)")
    module, spec = where.stdout.split()
    assert Path(module).is_relative_to(env_dir), where.stderr
    assert Path(spec).is_file()  # the OpenAPI file ships with the package (for FakeStripe)

    fragment = env_dir / "bin" / "fragment"
    listed = run(fragment, "connectors", "list", "--all", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    for name in ("stripe", "stripe-efw"):
        assert rows[name]["package"] == "fragment-stripe"
        assert set(rows[name]["capabilities"]) == {"incremental", "write_back"}
        assert "not installed" not in json.dumps(rows[name])
    shown = run(fragment, "connectors", "show", "stripe-efw", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "api_key" in shown.stdout and "lookback_days" in shown.stdout
