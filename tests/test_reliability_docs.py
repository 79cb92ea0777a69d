"""docs/reliability.md names, for each guarantee, the test that proves it: every test it
names must exist, and every reliability test must be named there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reliability.md"
#: ``tests/test_x.py::test_name``, ``tests/test_x.py`` or a bare ``test_name`` in backticks.
REFERENCE = re.compile(r"`(?:(tests/[\w/]+\.py)(?:::(\w+))?|(test_\w+))(?:\[[^\]]*\])?`")
OWN_FILES = ["test_reliability_*.py", "test_fuzz_*.py", "test_security.py"]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def _references() -> tuple[set[tuple[str, str | None]], set[str]]:
    qualified: set[tuple[str, str | None]] = set()
    bare: set[str] = set()
    for match in REFERENCE.finditer(PAGE.read_text(encoding="utf-8")):
        file, name, alone = match.groups()
        if file:
            qualified.add((file, name))
        else:
            bare.add(alone)
    return qualified, bare


def test_every_named_test_exists() -> None:
    qualified, bare = _references()
    assert len(qualified) > 15 and bare, "the page names too few tests to mean anything"
    everything: set[str] = set()
    for file, name in qualified:
        path = ROOT / file
        assert path.is_file(), f"docs/reliability.md names {file}, which does not exist"
        tests = _tests_in(path)
        everything |= tests
        assert name is None or name in tests, f"{file} has no test {name}"
    for path in (ROOT / "tests").glob("test_*.py"):
        everything |= _tests_in(path)
    assert bare <= everything, f"named but missing: {sorted(bare - everything)}"


def test_every_reliability_test_is_named_in_the_page() -> None:
    text = PAGE.read_text(encoding="utf-8")
    files = sorted({p for pattern in OWN_FILES for p in (ROOT / "tests").glob(pattern)})
    assert len(files) >= 8
    unnamed = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        if f"`{relative}`" in text:
            continue  # the whole file is named
        unnamed += [f"{relative}::{t}" for t in sorted(_tests_in(path)) if t not in text]
    assert unnamed == [], "tests that prove no stated guarantee (or the page forgot them)"
