"""Record fingerprints: how a re-sync knows, without mapping it, that a record is unchanged.

Mapping a record (``to_task``, the transform hooks, the body and its hash) is most of
what a re-sync costs. The state keeps a hash of each mapped record's raw form
(:meth:`Connector.fingerprint`), keyed by a :func:`mapping_key` of everything else that
shapes the task: fragment-core's version, the connector's class, package version and
``mapping_version``, the source's name and options, and the transform hooks installed.
A record whose hash is the one stored is unchanged and skipped; change any of those and
every record is mapped once more. Sources whose transform hooks read data from outside
the record set ``skip_unchanged = false`` (or run ``fragment sync --remap``).
"""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Sequence
from typing import Any

from fragment_core import __version__
from fragment_core.config import SourceSettings
from fragment_core.connector import Connector, Record


def mapping_key(source: SourceSettings, connector: Connector, pm: Any = None) -> bytes:
    """A 32-byte key naming everything, besides the record, that shapes its task."""
    cls = type(connector)
    parts: dict[str, Any] = {
        "core": __version__,
        "connector": f"{cls.__module__}.{cls.__qualname__}",
        "mapping_version": getattr(cls, "mapping_version", ""),
        "source": source.name,
        "options": _options(source.options),
    }
    if pm is not None:
        from fragment_core.plugins import get_registry

        entry = get_registry(pm).entries.get(connector.name)
        if entry is not None and entry.cls is cls:
            parts["package"] = entry.plugin.package
        parts["hooks"] = [
            pm.info(impl.plugin).package + " " + pm.info(impl.plugin).name
            for impl in pm.hook.fragment_transform_task.get_hookimpls()
        ]
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=32).digest()


def _options(options: Any) -> Any:
    dump = getattr(options, "model_dump_json", None)
    return dump() if dump is not None else options  # secrets are masked: not part of it


class Fingerprinter:
    """Hashes a connector's record fingerprints under a :func:`mapping_key`."""

    def __init__(self, connector: Connector, key: bytes) -> None:
        self.fingerprint = connector.fingerprint
        self.key = key
        self._default = type(connector).fingerprint is Connector.fingerprint
        self._base = hashlib.blake2b(key, digest_size=16)  # copied for each record

    def __call__(self, record: Record) -> str | None:
        """The record's hash as stored in the state, or ``None`` (always map it)."""
        try:
            data = self.fingerprint(record)
        except Exception:
            return None
        if data is None:
            return None
        digest = self._base.copy()
        digest.update(data)
        return digest.hexdigest()

    def many(self, records: Sequence[Record]) -> list[str | None]:
        """``[self(r) for r in records]``; for the default :meth:`Connector.fingerprint`,
        without a Python call per record (a re-sync's hot path)."""
        if not self._default:
            return [self(record) for record in records]
        base, dumps = self._base, marshal.dumps
        hashes: list[str | None] = []
        for record in records:
            if type(record) is dict:
                try:
                    data = dumps(record, 2)
                except ValueError:
                    hashes.append(None)
                    continue
                digest = base.copy()
                digest.update(data)
                hashes.append(digest.hexdigest())
            else:
                hashes.append(None)
        return hashes
