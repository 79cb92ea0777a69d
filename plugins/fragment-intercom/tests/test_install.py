"""fragment-intercom installs alone from its wheel next to fragment-core, and is discovered."""

from __future__ import annotations

import json
from pathlib import Path

from fragment_core.testing.install import run, throwaway_venv

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]


def test_wheel_installs_next_to_fragment_core_and_registers_intercom(tmp_path: Path) -> None:
    env_dir = throwaway_venv(tmp_path, REPO, PLUGIN)
    python = env_dir / "bin" / "python"

    where = run(python, "-c", "import fragment_intercom; print(fragment_intercom.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stderr
    spec = run(python, "-c", "from fragment_intercom.testing import openapi_path; "
               "print(openapi_path().is_file())")  # fmt: skip
    assert spec.stdout.strip() == "True", spec.stderr  # the OpenAPI file ships in the wheel

    fragment = env_dir / "bin" / "fragment"
    listed = run(fragment, "connectors", "list", "--all", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["intercom"]["package"] == "fragment-intercom"
    assert rows["intercom"]["installed"] is True and rows["intercom"]["install"] is None
    assert set(rows["intercom"]["capabilities"]) == {"incremental", "write_back"}
    shown = run(fragment, "connectors", "show", "intercom", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "access_token" in shown.stdout and "base_url" in shown.stdout
