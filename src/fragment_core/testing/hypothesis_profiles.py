"""Hypothesis profiles of the test suites: derandomized in CI, a random search elsewhere.

=========  ===============================================================================
profile    use
=========  ===============================================================================
``ci``     chosen when ``CI`` is set to true (``.ci/run`` does): every run draws the same
           examples (``derandomize``), no example database, failing blobs printed, so a
           landing is never decided by chance
``dev``    the default elsewhere (``./scripts/test``): a new random search each run, failures
           remembered in ``.hypothesis/``
``soak``   ``bench/soak.py``'s fuzz stage: random, no database, blobs printed
=========  ===============================================================================

``HYPOTHESIS_PROFILE`` names a profile explicitly (it wins over ``CI``).
"""

from __future__ import annotations

import os

PROFILE_ENV = "HYPOTHESIS_PROFILE"


def chosen_profile(env: dict[str, str] | None = None) -> str:
    """The profile for this environment: ``$HYPOTHESIS_PROFILE``, else ``ci`` when ``CI``
    is true, else ``dev``."""
    env = dict(os.environ) if env is None else env
    explicit = env.get(PROFILE_ENV, "").strip()
    if explicit:
        return explicit
    return "ci" if env.get("CI", "").strip().lower() in ("1", "true", "yes") else "dev"


def register_profiles() -> str:
    """Register the profiles and load the chosen one; returns its name. A no-op (``""``)
    when Hypothesis is not installed."""
    try:
        from hypothesis import settings
    except ImportError:  # a connector author's suite without Hypothesis
        return ""
    settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    settings.register_profile("dev")
    settings.register_profile("soak", database=None, print_blob=True)
    name = chosen_profile()
    settings.load_profile(name)
    return name
