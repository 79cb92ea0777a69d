"""fragment-stripe installs alone from its wheel next to fragment-core, and is discovered."""

from __future__ import annotations

import json
from pathlib import Path

from fragment_core.testing.install import install_package

PLUGIN = Path(__file__).resolve().parents[1]


def test_wheel_installs_next_to_fragment_core_and_registers_both_connectors(
    tmp_path: Path,
) -> None:
    installed = install_package(tmp_path, PLUGIN)

    where = installed.python("import fragment_stripe.testing as t; print(t.__file__, t.SPEC)")
    module, spec = where.stdout.split()
    assert Path(module).is_relative_to(installed.env_dir), where.stderr
    assert Path(spec).is_file()  # the OpenAPI file ships with the package (for FakeStripe)

    rows = installed.connectors("--all")
    for name in ("stripe", "stripe-efw"):
        assert rows[name]["package"] == "fragment-stripe"
        assert set(rows[name]["capabilities"]) == {"incremental", "write_back"}
        assert "not installed" not in json.dumps(rows[name])
    shown = installed.show("stripe-efw")
    assert "api_key" in shown and "lookback_days" in shown
