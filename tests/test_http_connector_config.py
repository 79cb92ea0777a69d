"""Options of the ``http`` connector: errors that name the key and show a valid example,
the annotated example, the docs' worked examples and ``fragment connectors show http``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.config import load_settings
from fragment_core.connectors.http import HttpConfig, HttpConnector, parse_options
from fragment_core.connectors.http.config import CursorPagination, PagePagination
from fragment_core.errors import ConfigurationError
from fragment_core.plugins import get_registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "connectors" / "http.md"


def valid(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "base_url": "https://backoffice.example.com",
        "backlog": {"path": "/api/tickets", "records_path": "data"},
        "mapping": {"title": "subject"},
    }
    options.update(overrides)
    return options


def error_of(options: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as info:
        parse_options(options)
    return str(info.value)


def test_minimal_options_and_defaults() -> None:
    config = parse_options(valid())
    assert config.auth.type == "none" and config.pagination.type == "none"
    assert config.mapping.external_id == "id"
    assert config.incremental is None and config.write_back is None


def test_unknown_pagination_type_lists_the_types_and_shows_an_example() -> None:
    text = error_of(valid(pagination={"type": "pages"}))
    assert (
        "options.pagination.type: must be one of none|page|offset|cursor|link_header|next_url "
        '(got \'pages\'); example: {type = "cursor", cursor_path = "meta.next", '
        'param = "cursor"}'
    ) in text


def test_missing_and_unknown_keys_name_the_key_with_an_example() -> None:
    text = error_of(
        valid(
            pagination={"type": "cursor", "cursor": "meta.next"},
            auth={"type": "bearer", "tokn": "x"},
        )
    )
    assert "options.pagination.cursor_path: required option is missing; example: " in text
    assert "options.pagination.cursor: unknown option (did you mean 'cursor_path'?)" in text
    assert "options.auth.token: required option is missing" in text
    assert "options.auth.tokn: unknown option (did you mean 'token'?)" in text
    assert '{type = "bearer", token = "${BACKOFFICE_TOKEN}"}' in text


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"base_url": "ftp://files.example.com"}, "options.base_url: 'ftp://files.example.com' is"),
        ({"backlog": {"path": "api/tickets"}}, "options.backlog.path: 'api/tickets' must start"),
        (
            {"mapping": {"title": "subject", "title_template": "{subject}"}},
            "options.mapping: set exactly one of title",
        ),
        ({"mapping": {"url": "https://x/{id"}}, "options.mapping.url: invalid template"),
        (
            {"mapping": {"title": "s", "custom": {"title": "name"}}},
            "options.mapping: custom/defaults cannot set ['title']",
        ),
        (
            {"incremental": {"cursor_field": "updated_at", "open_field": "status"}},
            "options.incremental: set open_field and open_values together",
        ),
        (
            {"pagination": {"type": "page", "size_param": "per_page"}},
            "options.pagination: size_param is set but size is not",
        ),
        ({"write_back": {"method": "GET", "path": "/t/{id}"}}, "options.write_back.method:"),
        ({"rate_limit": 0}, "options.rate_limit: Input should be greater than or equal to 1"),
    ],
)
def test_each_invalid_option_is_named(overrides: dict[str, Any], expected: str) -> None:
    text = error_of(valid(**overrides))
    assert expected in text
    assert re.search(re.escape(expected) + r".*; example: ", text)


def test_errors_go_through_the_config_loader(tmp_path: Path) -> None:
    path = tmp_path / "fragment.toml"
    path.write_text(
        """
[tasks_api]
token = "${FRAGMENT_TOKEN}"

[[sources]]
name = "backoffice"
connector = "http"
[sources.options]
base_url = "https://backoffice.example.com"
auth = { type = "bearer", token = "${BACKOFFICE_TOKEN}" }
backlog = { path = "/api/tickets" }
pagination = { type = "cursorr" }
mapping = { title = "subject" }
"""
    )
    env = {"FRAGMENT_TOKEN": "t", "BACKOFFICE_TOKEN": "sekrit-token-value"}
    with pytest.raises(ConfigurationError) as info:
        load_settings(path, registry=get_registry(), env=env)
    text = str(info.value)
    assert 'sources[0] "backoffice" (http)' in text
    assert "options.pagination.type: must be one of" in text and "example:" in text
    assert "sekrit-token-value" not in text


def test_secrets_are_masked_in_the_config() -> None:
    config = parse_options(
        valid(auth={"type": "basic", "username": "sync", "password": "pw-sekrit"})
    )
    assert "pw-sekrit" not in repr(config) and "pw-sekrit" not in config.model_dump_json()


def test_the_annotated_example_is_complete_and_valid() -> None:
    config = parse_options(HttpConnector.example_options)
    assert isinstance(config.pagination, CursorPagination)
    assert config.incremental is not None and config.write_back is not None
    assert set(HttpConnector.example_options) == set(HttpConfig.model_fields) - {"auth"} | {"auth"}
    assert HttpConnector.example_toml.count("#") > 20  # annotated
    assert tomllib.loads(HttpConnector.example_toml)["sources"][0]["connector"] == "http"


def test_connectors_show_http_prints_the_schema_and_the_example() -> None:
    result = CliRunner().invoke(cli, ["connectors", "show", "http"])
    assert result.exit_code == 0, result.output
    for option in HttpConfig.model_fields:
        assert option in result.output
    assert "Root of the API" in result.output  # the table's descriptions
    assert 'connector = "http"' in result.output
    # nested options (a pagination style's fields) are described in the JSON Schema
    schema = CliRunner().invoke(cli, ["connectors", "show", "http", "--json"])
    assert schema.exit_code == 0 and "Path of the next cursor in the response" in schema.output


def docs_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)


def test_docs_have_three_worked_examples_that_load(tmp_path: Path) -> None:
    examples = docs_examples()
    assert len(examples) == 3
    env = {
        "FRAGMENT_TOKEN": "t",
        "PAYMENTS_TOKEN": "p",
        "DISPUTES_API_KEY": "k",
    }
    kinds = []
    for index, text in enumerate(examples):
        path = tmp_path / f"example{index}.toml"
        path.write_text(text)
        (source,) = load_settings(path, registry=get_registry(), env=env).sources
        config = source.options
        assert isinstance(config, HttpConfig)
        kinds.append(
            (
                config.auth.type,
                config.pagination.type,
                bool(config.write_back),
                bool(config.incremental),
            )
        )
    assert kinds == [
        ("none", "page", False, False),
        ("bearer", "cursor", True, False),
        ("api_key", "link_header", False, True),
    ]
    assert isinstance(
        parse_options(tomllib.loads(examples[0])["sources"][0]["options"]).pagination,
        PagePagination,
    )


def test_a_secret_in_a_nested_table_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "office").write_text("s3cret-office\n")
    path = tmp_path / "fragment.toml"
    path.write_text(
        """
[tasks_api]
url = "http://127.0.0.1:1"
token = "t"

[[sources]]
name = "office"
connector = "http"
[sources.options]
base_url = "https://backoffice.example.com"
auth = {type = "bearer", token_file = "secrets/office"}
backlog = {path = "/api/tickets", records_path = "data"}
mapping = {title = "subject", custom = {report_file = "attachments.report"}}
"""
    )
    (source,) = load_settings(path, registry=get_registry(), env={}).sources
    assert source.options.auth.token.get_secret_value() == "s3cret-office"
    # free-form tables (custom fields) are data: a key ending in _file stays as it is
    assert source.options.mapping.custom == {"report_file": "attachments.report"}
    missing = path.read_text().replace("secrets/office", "secrets/none")
    path.write_text(missing)
    with pytest.raises(ConfigurationError, match=r"options\.auth\.token_file: cannot read"):
        load_settings(path, registry=get_registry(), env={})
