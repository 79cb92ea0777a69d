"""fragment_core.validation: the one explainer of pydantic errors (config and options)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fragment_core.validation import EXPLAINED, explain, explained_error, loc_text


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str


class Plain(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate_limit: float = 1.0
    auth: Inner | None = None


class A(BaseModel):
    model_config = ConfigDict(extra="forbid")
    example: ClassVar[str] = '{type = "a", size = 1}'
    type: Literal["a"]
    size: int


class B(BaseModel):
    model_config = ConfigDict(extra="forbid")
    example: ClassVar[str] = '{type = "b"}'
    type: Literal["b"]


class WithExamples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    example: ClassVar[str] = 'paging = {type = "a", size = 1}'
    paging: Annotated[A | B, Field(discriminator="type")]


def _errors(model: type[BaseModel], data: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    found = []
    for error in info.value.errors():
        loc, text = explain(error, model)
        found.append((loc_text(loc), text))
    return found


def test_a_misspelt_key_is_named_with_a_hint() -> None:
    assert _errors(Plain, {"rate_limt": 2}) == [
        ("rate_limt", "unknown key (did you mean 'rate_limit'?)")
    ]
    assert _errors(Plain, {"auth": {"tokn": "x"}}) == [
        ("auth.token", "field required"),
        ("auth.tokn", "unknown key (did you mean 'token'?)"),
    ]


def test_union_tags_are_dropped_and_examples_added() -> None:
    (found,) = _errors(WithExamples, {"paging": {"type": "a", "size": "x"}})
    assert found[0] == "paging.size"
    assert found[1].endswith('; example: {type = "a", size = 1}')
    (found,) = _errors(WithExamples, {"paging": {"type": "c"}})
    sample = '{type = "a", size = 1}'
    assert found == ("paging.type", f"must be one of a|b (got 'c'); example: {sample}")


def test_explained_errors_are_not_explained_twice() -> None:
    with pytest.raises(ValidationError) as info:
        WithExamples.model_validate({"paging": {"type": "a"}})
    once = explained_error(info.value, WithExamples, noun="option").errors()
    assert [e["type"] for e in once] == [EXPLAINED]
    assert explain(once[0], WithExamples) == (("paging", "size"), once[0]["msg"])
    assert once[0]["msg"].startswith("required option is missing; example: ")
