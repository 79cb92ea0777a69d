"""An outside package, pip-installed next to fragment-core, is discovered by entry point."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fragment_core.sandbox.runner import run_sandbox
from fragment_core.testing.install import run, throwaway_venv

REPO = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).parent / "data" / "third_party_plugin"


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with wheels of fragment-core and fragment-acme installed (offline).

    The wheels are built by the current environment's pip (hatchling is a dev dependency);
    the new venv sees the current environment's third-party libraries through a .pth file
    (a plain path: .pth files of that directory, such as editable installs, are not run).
    """
    return throwaway_venv(tmp_path_factory.mktemp("acme"), REPO, PLUGIN)


def fragment(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAGMENT_")}
    env["ACME_API_KEY"] = "acme-secret-value"
    return run(env_dir / "bin" / "fragment", *args, cwd=cwd, env=env)


def test_outside_package_is_discovered(plugin_venv: Path, tmp_path: Path) -> None:
    where = run(
        plugin_venv / "bin" / "python", "-c", "import fragment_core; print(fragment_core.__file__)"
    )
    assert Path(where.stdout.strip()).is_relative_to(plugin_venv), "core not from the venv"

    listed = fragment(plugin_venv, "connectors", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["acme"]["package"] == "fragment-acme"
    assert rows["acme"]["version"] == "1.2.3"

    plugins = fragment(plugin_venv, "plugins", "--json", cwd=tmp_path)
    acme = [p for p in json.loads(plugins.stdout) if p["name"] == "acme"]
    assert acme == [
        {
            "name": "acme",
            "distribution": "fragment-acme",
            "version": "1.2.3",
            "builtin": False,
            "hooks": ["fragment_register_connectors"],
        }
    ]


def test_outside_connector_is_usable_from_config(plugin_venv: Path, tmp_path: Path) -> None:
    with run_sandbox(token="t") as sandbox:  # fragment check reaches the Tasks API too
        (tmp_path / "fragment.toml").write_text(
            f'[tasks_api]\nurl = "{sandbox.url}"\ntoken = "t"\n\n'
            '[[sources]]\nname = "backoffice"\nconnector = "acme"\n'
            '[sources.options]\nregion = "eu"\napi_key = "${ACME_API_KEY}"\n'
        )
        validated = fragment(plugin_venv, "config", "validate", cwd=tmp_path)
        checked = fragment(plugin_venv, "check", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert "backoffice (acme)" in validated.stdout
    assert checked.returncode == 0, checked.stderr
    assert "backoffice (acme): acme region eu reachable" in checked.stdout
    assert "acme-secret-value" not in checked.stdout + checked.stderr

    (tmp_path / "fragment.toml").write_text(
        '[tasks_api]\ntoken = "t"\n\n[[sources]]\nname = "backoffice"\nconnector = "acme"\n'
    )
    invalid = fragment(plugin_venv, "config", "validate", cwd=tmp_path)
    assert invalid.returncode == 2
    assert 'fragment.toml: sources[0] "backoffice" (acme): options.region: field required' in (
        invalid.stderr
    )
