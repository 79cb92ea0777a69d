"""fragment-hubspot installs alone from its wheel next to fragment-core, and is discovered."""

from __future__ import annotations

from pathlib import Path

from fragment_core.testing.install import install_package

PLUGIN = Path(__file__).resolve().parents[1]


def test_wheel_installs_next_to_fragment_core_and_registers_hubspot(tmp_path: Path) -> None:
    # wheels of both distributions, built offline; a fresh venv that sees this environment's
    # third-party libraries through a plain .pth path (editable installs there are not run)
    installed = install_package(tmp_path, PLUGIN)
    assert installed.imported_from("fragment_hubspot")

    rows = installed.connectors()
    assert rows["hubspot"]["package"] == "fragment-hubspot"
    assert set(rows["hubspot"]["capabilities"]) == {"incremental", "write_back"}
    shown = installed.show("hubspot")
    assert "access_token" in shown and "search_result_cap" in shown
