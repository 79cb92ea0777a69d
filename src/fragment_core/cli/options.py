"""A connector's options read from its ``Config`` JSON Schema: for the table of
``fragment connectors show`` and the commented ``fragment.toml`` of ``fragment init``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Option", "options_of", "schema_type", "toml_key", "toml_value"]

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Option:
    """One top-level option of a connector's ``[sources.options]``."""

    name: str
    type: str
    required: bool
    default: Any
    description: str
    nested: bool
    """An object (a sub-table) rather than a scalar, list or mapping of scalars."""

    @property
    def has_default(self) -> bool:
        """Whether the schema names a default (``None`` counts: the option is optional)."""
        return self.default is not _NO_DEFAULT

    @property
    def default_text(self) -> str:
        """The default as the table shows it."""
        if self.required:
            return "(required)"
        if not self.has_default or self.default is None:
            return "-"
        return toml_value(self.default)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def schema_type(prop: dict[str, Any]) -> str:
    """A short type name of a JSON Schema property: ``string``, ``csv | jsonl``,
    ``list of string``, ``BearerAuth | BasicAuth``; ``null`` alternatives left out."""
    if "$ref" in prop:
        return _ref_name(prop["$ref"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) if not isinstance(v, str) else v for v in prop["enum"])
    if "const" in prop:
        return str(prop["const"])
    for key in ("anyOf", "oneOf"):
        if key in prop:
            parts = [schema_type(p) for p in prop[key] if p.get("type") != "null"]
            return " | ".join(dict.fromkeys(parts)) or "null"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {schema_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"table of {schema_type(prop['additionalProperties'])}"
    if kind == "string" and prop.get("format") in ("path", "password", "uri", "date-time"):
        return {"password": "secret string"}.get(prop["format"], prop["format"])
    return str(kind)


def _nested(prop: dict[str, Any]) -> bool:
    if "$ref" in prop:
        return True
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return any(_nested(p) for p in prop[key])
    return prop.get("type") == "object" and not isinstance(prop.get("additionalProperties"), dict)


def options_of(schema: dict[str, Any]) -> list[Option]:
    """The top-level options of a ``Config`` JSON Schema, in declaration order."""
    required = set(schema.get("required", ()))
    return [
        Option(
            name=name,
            type=schema_type(prop),
            required=name in required,
            default=prop.get("default", _NO_DEFAULT),
            description=" ".join(str(prop.get("description", "")).split()),
            nested=_nested(prop),
        )
        for name, prop in schema.get("properties", {}).items()
    ]


def toml_key(key: str) -> str:
    """``key`` as a TOML key (bare when it can be)."""
    return key if key and key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (inline tables for mappings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return json.dumps(str(value), ensure_ascii=False)
