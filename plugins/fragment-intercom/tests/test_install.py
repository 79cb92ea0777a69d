"""fragment-intercom installs alone from its wheel next to fragment-core, and is discovered."""

from __future__ import annotations

from pathlib import Path

from fragment_core.testing.install import install_package

PLUGIN = Path(__file__).resolve().parents[1]


def test_wheel_installs_next_to_fragment_core_and_registers_intercom(tmp_path: Path) -> None:
    installed = install_package(tmp_path, PLUGIN)
    assert installed.imported_from("fragment_intercom")
    spec = installed.python(
        "from fragment_intercom.testing import openapi_path; print(openapi_path().is_file())"
    )
    assert spec.stdout.strip() == "True", spec.stderr  # the OpenAPI file ships in the wheel

    rows = installed.connectors("--all")
    assert rows["intercom"]["package"] == "fragment-intercom"
    assert rows["intercom"]["installed"] is True and rows["intercom"]["install"] is None
    assert set(rows["intercom"]["capabilities"]) == {"incremental", "write_back"}
    shown = installed.show("intercom")
    assert "access_token" in shown and "base_url" in shown
