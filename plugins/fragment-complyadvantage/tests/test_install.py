"""fragment-complyadvantage installs alone from its wheel next to fragment-core, and is
discovered: `fragment connectors list --all` no longer calls it "not installed"."""

from __future__ import annotations

from pathlib import Path

from fragment_core.testing.install import install_package

PLUGIN = Path(__file__).resolve().parents[1]


def test_wheel_installs_next_to_fragment_core_and_registers_both_connectors(
    tmp_path: Path,
) -> None:
    installed = install_package(tmp_path, PLUGIN)
    assert installed.imported_from("fragment_complyadvantage")

    rows = installed.connectors("--all")
    for name in ("complyadvantage", "complyadvantage-mesh"):
        assert rows[name]["package"] == "fragment-complyadvantage", rows[name]
        assert rows[name]["installed"] is True, rows[name]
        assert set(rows[name]["capabilities"]) == {"incremental", "write_back"}
    shown = installed.show("complyadvantage-mesh")
    assert "decision_stage" in shown and "realm" in shown
