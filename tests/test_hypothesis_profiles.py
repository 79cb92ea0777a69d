"""CI is deterministic: the suite's Hypothesis profile is derandomized there, random here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fragment_core.testing.hypothesis_profiles import chosen_profile

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
from hypothesis import settings

def test_profile():
    current = settings()
    print("PROFILE", settings._current_profile, current.derandomize, current.database,
          current.print_blob)
"""


def _probe(tmp_path: Path, **env: str) -> str:
    (tmp_path / "test_probe.py").write_text(PROBE)
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_probe.py"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return next(line for line in done.stdout.splitlines() if line.startswith("PROFILE"))


def test_ci_true_selects_the_derandomized_profile(tmp_path: Path) -> None:
    assert _probe(tmp_path, CI="true") == "PROFILE ci True None True"


def test_locally_the_search_stays_random(tmp_path: Path) -> None:
    line = _probe(tmp_path)
    assert line.startswith("PROFILE dev False "), line


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "dev"),
        ({"CI": "true"}, "ci"),
        ({"CI": "1"}, "ci"),
        ({"CI": "false"}, "dev"),
        ({"CI": "true", "HYPOTHESIS_PROFILE": "soak"}, "soak"),
    ],
)
def test_chosen_profile(env: dict[str, str], expected: str) -> None:
    assert chosen_profile(env) == expected


def test_ci_script_exports_the_ci_profile() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "export CI=true HYPOTHESIS_PROFILE=ci" in text
    assert text.index("HYPOTHESIS_PROFILE=ci") < text.index("exec ./scripts/test")
