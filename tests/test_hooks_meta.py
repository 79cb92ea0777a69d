"""Every hookspec has a docs section with its exact signature and a test of its own."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from fragment_core import hookspecs

REPO = Path(__file__).resolve().parents[1]
HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("fragment_") and callable(value)
)


def rendered_signature(name: str) -> str:
    """``def name(arg: Type, ...) -> Return`` as written in hookspecs.py, on one line."""
    signature = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"def {name}({params}) -> {signature.return_annotation}"


def docs_sections() -> dict[str, str]:
    text = (REPO / "docs" / "hooks.md").read_text()
    parts = re.split(r"^## `(\w+)`[^\n]*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_hookspecs_are_found() -> None:
    assert {"fragment_register_connectors", "fragment_transform_task"} <= set(HOOKS)
    assert rendered_signature("fragment_sync_finished") == (
        "def fragment_sync_finished(report: SyncReport) -> None"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_docs_section_with_exact_signature(hook: str) -> None:
    sections = docs_sections()
    assert hook in sections, f"docs/hooks.md has no section '## `{hook}`'"
    body = sections[hook]
    assert rendered_signature(hook) in body, (
        f"the section of {hook} in docs/hooks.md lacks its exact signature:\n"
        f"{rendered_signature(hook)}"
    )
    for heading in ("Parameters", "Returns", "Example"):
        assert f"**{heading}**" in body, f"the section of {hook} lacks **{heading}**"


def test_no_docs_section_for_a_hook_that_does_not_exist() -> None:
    assert sorted(docs_sections()) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    pattern = re.compile(rf"^\s*(?:async\s+)?def test_hook_{hook}\b", re.MULTILINE)
    files = [p for p in (REPO / "tests").rglob("*.py") if pattern.search(p.read_text())]
    assert files, f"no test function named test_hook_{hook} under tests/"
