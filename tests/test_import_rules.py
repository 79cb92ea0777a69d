"""The layering rules of the codebase, made executable.

- ``fragment_core.sync`` (the engine) imports neither the CLI package nor click/rich: a
  Temporal worker imports the engine and must not load a terminal UI.
- ``fragment_core.state`` and ``fragment_core.tasks_api`` import no engine (``sync``).
- Vendor packages (``plugins/*/src``) use only the public API of the core: no
  ``_private`` module or name of ``fragment_core``, and not the CLI package.
- ``fragment_core.config`` imports no plugins (no import cycle: the registry is given to
  ``load_settings`` and builds the connectors).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "fragment_core"
TERMINAL = {"click", "rich"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names, relative ones resolved), with its line."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    text = path.read_text() if text is None else text
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _violations(files: list[Path], forbidden: set[str]) -> list[str]:
    bad = []
    for path in files:
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(set(bad))


def _py(package: Path) -> list[Path]:
    return sorted(package.rglob("*.py"))


def test_sync_imports_no_cli_and_no_terminal_library() -> None:
    assert _py(SRC / "sync"), "the engine package moved: update this rule"
    assert _violations(_py(SRC / "sync"), {"fragment_core.cli", *TERMINAL}) == []


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_importing_the_engine_loads_neither_click_nor_rich() -> None:
    """The issue's own check, then every engine module. httpx loads click and rich for its
    optional command line client when they are installed (``httpx._main``); blocking that one
    module shows nothing of ours loads them."""
    literal = _run(
        "import fragment_core.sync, sys; assert not {'click','rich'} & set(sys.modules)"
    )
    assert literal.returncode == 0, literal.stderr
    every_module = _run(
        "import sys, pkgutil, importlib\n"
        "sys.modules['httpx._main'] = None\n"
        "import fragment_core.sync as s\n"
        "for m in pkgutil.walk_packages(s.__path__, 'fragment_core.sync.'):\n"
        "    importlib.import_module(m.name)\n"
        "loaded = sorted(k for k in sys.modules if k.split('.')[0] in {'click', 'rich'})\n"
        "assert not loaded, loaded\n"
    )
    assert every_module.returncode == 0, every_module.stderr


def test_the_import_checker_sees_a_violation() -> None:
    """The rule can fail: a module importing rich, relatively or not, is reported."""
    where = SRC / "sync" / "engine.py"
    text = "import rich.console\nfrom ..cli import main\nfrom .plan import Plan\n"
    names = [name for _, name in _imports(where, text)]
    assert "rich.console" in names
    assert "fragment_core.cli" in names
    assert "fragment_core.sync.plan" in names


def test_config_imports_no_plugins() -> None:
    forbidden = {"fragment_core.plugins", "fragment_core.cli"}
    assert _violations([SRC / "config.py"], forbidden) == []


def test_state_and_tasks_api_import_no_engine() -> None:
    files = [*_py(SRC / "state"), SRC / "tasks_api.py"]
    assert _violations(files, {"fragment_core.sync", "fragment_core.cli"}) == []


PLUGINS = ROOT / "plugins"


def _private_core_imports(path: Path, text: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    bad = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for name in names:
            parts = name.split(".")
            if parts[0] != "fragment_core":
                continue
            if any(part.startswith("_") for part in parts) or parts[:2] == ["fragment_core", "cli"]:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    return bad


def test_vendor_packages_use_only_the_public_core() -> None:
    files = sorted(PLUGINS.glob("*/src/**/*.py"))
    assert files, "no vendor package found under plugins/*/src"
    assert [bad for path in files for bad in _private_core_imports(path)] == []


def test_the_public_core_rule_can_fail() -> None:
    where = PLUGINS / "fragment-x" / "src" / "x.py"
    text = (
        "from fragment_core.retries import _parse\n"
        "from fragment_core._util import y\n"
        "import fragment_core.cli\n"
        "from fragment_core.retries import RetryPolicy\n"
    )
    found = _private_core_imports(where, text)
    assert [line.rsplit(" ", 1)[1] for line in found] == [
        "fragment_core.retries._parse",
        "fragment_core._util",
        "fragment_core._util.y",
        "fragment_core.cli",
    ]
