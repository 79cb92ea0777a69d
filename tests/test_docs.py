"""The docs build strictly, and every CLI command and every hook is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from fragment_core import hookspecs
from fragment_core.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def command_paths(group: click.Group, prefix: tuple[str, ...] = ("fragment",)) -> list[str]:
    """Every command of a click group, as typed: ``fragment connectors list``."""
    paths = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        paths.append(" ".join(path))
        if isinstance(command, click.Group):
            paths += command_paths(command, path)
    return paths


def hook_names() -> list[str]:
    """Every hookspec of fragment-core."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("fragment_") and hasattr(value, marker)
    )


def docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))


def undocumented(names: list[str], text: str) -> list[str]:
    """The names that do not appear in ``text`` as a whole word sequence."""
    return [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]


# Each public module and the API reference page that documents it, with names its page
# must render (mkdocstrings gives every documented object an anchor of its dotted path).
API_PAGES = {
    "fragment_core.connector": (
        "reference/connector",
        ["Connector", "Completion", "Completion.fill", "Connector.unix_cursor", "placeholders"],
    ),
    "fragment_core.mapping": ("reference/mapping", ["html_to_text", "shorten", "parse_datetime"]),
    "fragment_core.errors": ("reference/errors", ["FragmentError", "TransientError"]),
    "fragment_core.task": ("reference/task", ["Task"]),
    "fragment_core.transport": ("reference/transport", ["Transport", "BearerAuth"]),
    "fragment_core.paging": ("reference/paging", ["Page", "paginate", "paginate_http"]),
    "fragment_core.redaction": ("reference/redaction", ["redact", "redact_url"]),
    "fragment_core.retries": ("reference/retries", ["RetryPolicy", "retry_after_from_headers"]),
    "fragment_core.tasks_api": ("reference/tasks_api", ["TasksClient"]),
    "fragment_core.sync.ports": ("reference/sync-ports", ["TasksApi"]),
    "fragment_core.testing.fakeapi": ("reference/testing", ["FakeAPI"]),
    "fragment_core.testing.fakevendor": ("reference/testing", ["FakeVendor"]),
    "fragment_core.testing.contract": ("reference/testing", ["ConnectorContract"]),
    "fragment_core.testing.pytest_plugin": ("reference/testing", ["fake_api"]),
    "fragment_core.testing.install": ("reference/testing", ["install_package", "InstalledPackage"]),
    "fragment_core.testing.cli": ("reference/testing", ["sync_json", "fragment_cli"]),
    "fragment_core.hookspecs": ("reference/hookspecs", hook_names()),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs built once with ``mkdocs build --strict`` (any warning fails the build)."""
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_mkdocs_builds_strictly(site: Path) -> None:
    assert (site / "writing-a-connector" / "index.html").is_file()


@pytest.mark.parametrize("module", sorted(API_PAGES))
def test_api_reference_documents_each_public_module(site: Path, module: str) -> None:
    page, names = API_PAGES[module]
    html = (site / page / "index.html").read_text()
    missing = [n for n in [module, *(f"{module}.{n}" for n in names)] if f'id="{n}"' not in html]
    assert missing == [], f"{page}.md does not render {missing}"
    roles = re.findall(r":(?:class|func|meth|attr|data|exc|mod|obj|const):", html)
    assert roles == [], f"{page}.md shows raw Sphinx roles"
    nav = (ROOT / "mkdocs.yml").read_text()
    assert f"{page}.md" in nav


def test_nav_lists_every_page() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert [p for p in pages if p not in nav] == []


def test_every_cli_command_is_documented() -> None:
    commands = command_paths(cli)
    assert "fragment new-connector" in commands and "fragment sync" in commands
    assert undocumented(commands, docs_text()) == []


def test_every_hook_is_documented() -> None:
    hooks = hook_names()
    assert "fragment_transform_task" in hooks
    assert undocumented(hooks, docs_text()) == []


def test_a_missing_command_or_hook_is_caught() -> None:
    @click.group()
    def extra() -> None: ...

    @extra.command("frobnicate")
    def frobnicate() -> None: ...

    group = click.Group(commands={**cli.commands, "extra": extra})
    missing = undocumented(command_paths(group), docs_text())
    assert missing == ["fragment extra", "fragment extra frobnicate"]
    assert undocumented(["fragment_never_heard_of", *hook_names()], docs_text()) == [
        "fragment_never_heard_of"
    ]
    # a longer name is not documented by a mention of its prefix
    assert undocumented(["fragment connectors lis"], "fragment connectors list") == [
        "fragment connectors lis"
    ]


def test_tutorial_lists_the_generated_files(tmp_path: Path) -> None:
    from fragment_core.testing.scaffold import create_connector_package

    files = create_connector_package("acme-tickets", tmp_path / "fragment-acme-tickets")
    tutorial = (DOCS / "writing-a-connector.md").read_text()
    assert [f.name for f in files if f.name not in tutorial] == []
    assert "class AcmeTicketsConnector(Connector[AcmeTicketsConfig])" in tutorial
    connector = tmp_path / "fragment-acme-tickets/src/fragment_acme_tickets/connector.py"
    assert "class AcmeTicketsConnector(Connector[AcmeTicketsConfig])" in connector.read_text()


def python_blocks(page: str) -> list[str]:
    """The fenced ``python`` code blocks of a docs page, in order."""
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.DOTALL)


def test_hook_plugin_example_runs_through_the_plugin_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's priority plugin registers, runs in the transform chain, and its test passes."""
    import importlib

    from fragment_core.plugins import PluginInfo, new_plugin_manager, transform_task
    from fragment_core.task import Task

    plugin_code, *_, test_code = python_blocks("writing-a-hook-plugin.md")
    package = tmp_path / "acme_fragment_hooks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(plugin_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = importlib.import_module("acme_fragment_hooks.plugin")

    pm = new_plugin_manager(entrypoints=False)
    pm.register_plugin(plugin, PluginInfo(name="acme_hooks", module=plugin.__name__))
    pm.check_pending()
    urgent = Task.new(external_id="1", title="Possible FRAUD", url="https://x.test/1")
    routine = Task.new(external_id="2", title="Address change", url="https://x.test/2")
    for task, priority in ((urgent, 1), (routine, 3)):
        result = transform_task(pm, task, {}, None)  # type: ignore[arg-type]
        assert result is not None and result.fields.custom["priority"] == priority
        assert result.fields.title == task.fields.title

    namespace: dict[str, object] = {}
    exec(compile(test_code, "writing-a-hook-plugin.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert tests, "the guide's 'Test it' block defines no test"
    for test in tests:
        test()
