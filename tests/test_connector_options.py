"""What vendor connectors share from fragment_core.connector: ``BaseUrl``, ``placeholders``
for template options, ``Completion.fill`` for write-back notes, stored cursors, ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import pytest
from pydantic import Field, ValidationError

from fragment_core.connector import (
    COMPLETION_PLACEHOLDERS,
    BaseUrl,
    Completion,
    ConfigurationError,
    Connector,
    ConnectorConfig,
    WriteBackError,
    placeholders,
)


class VendorConfig(ConnectorConfig):
    base_url: BaseUrl = Field(default="https://api.example.com", description="API base.")
    url_template: Annotated[str, placeholders("app_id", "item_id")] = Field(
        default="https://app.example.com/{app_id}/items/{item_id}", description="Link."
    )
    note: Annotated[str, placeholders(*COMPLETION_PLACEHOLDERS)] | None = Field(
        default=None, description="Note."
    )


def test_base_url_is_checked_and_loses_its_trailing_slash() -> None:
    assert VendorConfig(base_url="https://api.example.com/").base_url == "https://api.example.com"
    for bad in ("ftp://x.example.com", "api.example.com", "https://x.example.com/?a=1"):
        with pytest.raises(ValidationError, match="base_url"):
            VendorConfig(base_url=bad)


@pytest.mark.parametrize(
    ("option", "value"),
    [("url_template", "https://x/{app}/{item_id}"), ("url_template", "https://x/{0}"),
     ("url_template", "https://x/{app_id"), ("note", "done {when}")],
)  # fmt: skip
def test_a_template_may_use_only_its_placeholders(option: str, value: str) -> None:
    with pytest.raises(ValidationError, match=f"{option} may use only "):
        VendorConfig.model_validate({option: value})


def test_templates_with_known_placeholders_pass_unchanged() -> None:
    config = VendorConfig(url_template="https://x/{item_id}", note="{source}: {uid} {done_at}")
    assert config.url_template == "https://x/{item_id}"
    assert config.note == "{source}: {uid} {done_at}"
    assert VendorConfig(note=None).note is None


def test_completion_fill_names_the_time_the_task_and_the_source() -> None:
    uid = uuid.UUID(int=7)
    done = Completion("crm", "42", uid, datetime(2025, 5, 6, 15, 0, tzinfo=UTC))
    assert done.fill("{source} {uid} {done_at}") == f"crm {uid} 2025-05-06T15:00:00.000Z"
    assert Completion("crm", "42", uid, None).fill("at {done_at}.") == "at ."


class _Incremental(Connector[VendorConfig]):
    name = "vendor"


def test_a_stored_unix_cursor_is_read_or_named_as_wrong() -> None:
    connector = _Incremental(VendorConfig(), source="crm")
    assert connector.unix_cursor("1746543600") == 1746543600
    assert connector.unix_cursor("1746543600.5") == 1746543600
    for bad in ("2025-05-01T00:00:00Z", "inf", ""):
        with pytest.raises(ConfigurationError, match="run a full sync") as caught:
            connector.unix_cursor(bad)
        assert "crm" in str(caught.value)


def test_a_stored_time_cursor_is_read_or_named_as_wrong() -> None:
    connector = _Incremental(VendorConfig(), source="crm")
    moment = datetime(2025, 5, 6, 15, 0, tzinfo=UTC)
    assert connector.time_cursor("2025-05-06T15:00:00.000Z") == moment
    assert connector.time_cursor("2025-05-06T15:00:00") == moment  # naive: UTC
    for bad in ("page-7", "", "yesterday"):
        with pytest.raises(ConfigurationError, match="is not a time; run a full sync"):
            connector.time_cursor(bad)


def test_only_a_digits_id_reaches_a_write_back_path() -> None:
    connector = _Incremental(VendorConfig(), source="crm")
    assert connector.digits_id("12345", "a ticket") == "12345"
    for bad in ("../admins", "12/34", "١٢", "", "12?x=1"):
        with pytest.raises(WriteBackError, match=r"is not a ticket id .*nothing sent") as caught:
            connector.digits_id(bad, "a ticket")
        assert "crm" in str(caught.value)
