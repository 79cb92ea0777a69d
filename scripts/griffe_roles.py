"""Griffe extension for the API reference: Sphinx roles in docstrings become code spans.

Our docstrings name objects as ``:class:`Transport``` or ``:func:`~fragment_core.x.y```;
Markdown has no roles, so ``:class:`X``` renders as ``X`` (``~a.b.c`` as ``c``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|exc|mod|obj|const):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles to Markdown code spans before rendering."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)
