"""The one explainer of pydantic validation errors (configuration and connector options).

:func:`explain` re-locates an error (tags of discriminated unions dropped), says ``unknown
key (did you mean 'x'?)`` for a misspelt key and, for models with an ``example`` class
attribute (TOML), adds the allowed keys and a valid example to the message.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["EXPLAINED", "explain", "explained_error", "loc_text"]

#: The pydantic error type of an error :func:`explain` has already explained.
EXPLAINED = "explained"


def loc_text(loc: typing.Iterable[Any], prefix: str = "") -> str:
    """``("auth", "token")`` -> ``auth.token``; ints as ``[i]``; under ``prefix`` if given."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _union_variants(annotation: Any) -> dict[str, type[BaseModel]]:
    """``{tag: model}`` for a union of models tagged by a ``type`` literal, else ``{}``."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) not in (Union, types.UnionType):
        return {}
    variants = {}
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel) and "type" in arg.model_fields:
            tag = typing.get_args(arg.model_fields["type"].annotation)
            if tag:
                variants[tag[0]] = arg
    return variants if len(variants) > 1 else {}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model of a (possibly optional) annotation."""
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _message(error: Mapping[str, Any], example: str) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not example:
        return message[:1].lower() + message[1:]
    if error["type"] == "missing":
        message = "required option is missing"
    return f"{message}; example: {example}"


def explain(
    error: Mapping[str, Any], model: type[BaseModel], *, noun: str = "key"
) -> tuple[tuple[Any, ...], str]:
    """The location (union tags dropped) and the message of one error of ``model``."""
    loc = tuple(error["loc"])
    if error["type"] == EXPLAINED:
        return loc, str(error["msg"])
    current: type[BaseModel] | None = model
    example: str = getattr(model, "example", "")
    clean: list[Any] = []
    index = 0
    while index < len(loc):
        part = loc[index]
        clean.append(part)
        field = current.model_fields.get(part) if current and isinstance(part, str) else None
        if current is not None and field is None and error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(part), list(current.model_fields), n=1)
            text = f"unknown {noun}" + (f" (did you mean {close[0]!r}?)" if close else "")
            if example:
                allowed = ", ".join(name for name in current.model_fields if name != "type")
                text += f"; allowed: {allowed}; example: {example}"
            return tuple(clean), text
        if field is None:
            current = None
            index += 1
            continue
        variants = _union_variants(field.annotation)
        if variants:
            tag = loc[index + 1] if index + 1 < len(loc) else None
            if tag in variants:
                current = variants[tag]
                example = getattr(current, "example", example)
                index += 2
                continue
            return (*clean, "type"), _bad_tag(error, variants)
        current = _model_of(field.annotation)
        if current is not None:
            example = getattr(current, "example", example)
        elif example and field.examples:
            example = f"{part} = {json.dumps(field.examples[0])}"
        index += 1
    return tuple(clean), _message(error, example)


def _bad_tag(error: Mapping[str, Any], variants: dict[str, type[BaseModel]]) -> str:
    first = next(iter(variants.values()))
    sample = variants.get("cursor") or variants.get("bearer") or first
    given_input = error.get("input")
    given = given_input.get("type") if isinstance(given_input, dict) else None
    got = f" (got {given!r})" if given is not None else ""
    text = f"must be one of {'|'.join(variants)}{got}"
    sample_example = getattr(sample, "example", "")
    return f"{text}; example: {sample_example}" if sample_example else text


def explained_error(exc: ValidationError, model: type[BaseModel], *, noun: str) -> ValidationError:
    """``exc`` with every error explained (type :data:`EXPLAINED`), for a wrap validator."""
    details = [
        {
            "type": PydanticCustomError(EXPLAINED, "{detail}", {"detail": text}),
            "loc": loc,
            "input": error.get("input"),
        }
        for error in exc.errors()
        for loc, text in [explain(error, model, noun=noun)]
    ]
    return ValidationError.from_exception_data(exc.title, details)  # type: ignore[arg-type]
