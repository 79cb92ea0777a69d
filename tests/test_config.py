"""Loading fragment.toml: interpolation, secret files, durations, and the messages people see."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from fragment_core.config import load_settings, parse_duration
from fragment_core.connector import Connector, ConnectorConfig
from fragment_core.errors import ConfigurationError
from fragment_core.plugins import ConnectorRegistry, PluginInfo


class DeskConfig(ConnectorConfig):
    subdomain: str
    token: SecretStr
    page_size: int = 100


class Desk(Connector[DeskConfig]):
    """A help desk."""

    name = "desk"
    Config = DeskConfig


@pytest.fixture
def registry() -> ConnectorRegistry:
    registry = ConnectorRegistry()
    registry.add(Desk, PluginInfo("desk", "tests", "fragment-desk", "1.0"))
    return registry


TASKS_API = '[tasks_api]\ntoken = "tok"\n'
SOURCE = '[[sources]]\nname = "{name}"\nconnector = "{connector}"\n'


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path, so messages name the file as a person passed it: fragment.toml."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "fragment.toml") -> Path:
    (tmp_path / name).write_text(text)
    return Path(name)


def error_of(path: Path, registry: ConnectorRegistry, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(path, registry=registry, env=env or {})
    return str(excinfo.value)


def test_full_config_loads(tmp_path: Path, registry: ConnectorRegistry) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "desk").write_text("desk-secret\n")
    path = write(tmp_path, """
        [tasks_api]
        url = "${API_URL:-https://api.example.test/v1}"
        token = "${FRAGMENT_TOKEN}"
        rate_limit = 30

        [state]
        url = "sqlite:///state.db"

        [[sources]]
        name = "support"
        connector = "desk"
        every = "1h30m"
        full_every = 7200
        reopen = "never"
        close = { max_share = 0.2 }
        [sources.options]
        subdomain = "acme-$${literal}"
        token_file = "secrets/desk"
    """.replace("\n        ", "\n"))  # fmt: skip
    settings = load_settings(path, registry=registry, env={"FRAGMENT_TOKEN": "api-secret"})
    assert settings.path == path
    assert settings.tasks_api.url == "https://api.example.test/v1"
    assert settings.tasks_api.token.get_secret_value() == "api-secret"
    assert settings.tasks_api.rate_limit == 30
    source = settings.source("support")
    assert source.every == timedelta(hours=1, minutes=30)
    assert source.full_every == timedelta(hours=2)
    assert source.reopen == "never" and source.close.max_share == 0.2
    assert isinstance(source.options, DeskConfig)
    assert source.options.subdomain == "acme-${literal}"
    assert source.options.token.get_secret_value() == "desk-secret"
    # secrets are never printed
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "api-secret" not in text and "desk-secret" not in text
    connector = registry.build(source)
    assert isinstance(connector, Desk) and connector.source == "support"
    assert "desk-secret" not in repr(connector)


def test_default_path_comes_from_env_then_cwd(
    tmp_path: Path, registry: ConnectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, TASKS_API)
    write(tmp_path, TASKS_API + SOURCE.format(name="a", connector="desk"), "other.toml")
    monkeypatch.delenv("FRAGMENT_CONFIG", raising=False)
    assert load_settings(registry=registry).path == Path("fragment.toml")
    monkeypatch.setenv("FRAGMENT_CONFIG", "other.toml")
    assert error_of(None, registry).startswith('other.toml: sources[0] "a" (desk): options.')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TASKS_API + SOURCE.format(name="a", connector="desk")
            + '[sources.options]\nsubdomain = "x"\ntoken = "x"\n'
            + SOURCE.format(name="support", connector="desk")
            + '[sources.options]\ntoken = "x"\n',
            'fragment.toml: sources[1] "support" (desk): options.subdomain: field required',
        ),
        (
            TASKS_API + SOURCE.format(name="support", connector="desk")
            + '[sources.options]\nsubdomain = "x"\ntoken = "x"\nsubdomian = "y"\n',
            'fragment.toml: sources[0] "support" (desk): options.subdomian: unknown key '
            "(did you mean 'subdomain'?)",
        ),
        (
            TASKS_API + SOURCE.format(name="support", connector="desk")
            + '[sources.options]\nsubdomain = "x"\ntoken = "x"\npage_size = "many"\n',
            'fragment.toml: sources[0] "support" (desk): options.page_size: input should be a '
            "valid integer, unable to parse string as an integer",
        ),
        (
            TASKS_API + SOURCE.format(name="support", connector="zendesk"),
            'fragment.toml: sources[0] "support" (zendesk): connector: connector \'zendesk\' is '
            "not installed; it is provided by the package fragment-zendesk: "
            "pip install ./plugins/fragment-zendesk (from a clone of the fragment-core repository)",
        ),
        (
            TASKS_API + SOURCE.format(name="support", connector="dsk"),
            'fragment.toml: sources[0] "support" (dsk): connector: unknown connector \'dsk\' '
            "(did you mean 'desk'?); known connectors: complyadvantage, complyadvantage-mesh, "
            "desk, hubspot, intercom, stripe, stripe-efw, zendesk",
        ),
        (
            TASKS_API + SOURCE.format(name="support", connector="desk") + 'every = "soon"\n',
            'fragment.toml: sources[0] "support" (desk): every: invalid duration \'soon\': use '
            "seconds (300) or a text like 30s, 5m, 1h30m, 2h",
        ),
        (
            TASKS_API + SOURCE.format(name="my source", connector="desk"),
            'fragment.toml: sources[0] "my source" (desk): name: string should match pattern '
            "'^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
        ),
        (
            TASKS_API + '[[sources]]\nconnector = "desk"\n',
            "fragment.toml: sources[0] (desk): name: field required",
        ),
        (
            '[tasks_api]\nurl = "https://x.test"\n',
            "fragment.toml: tasks_api.token: field required",
        ),
        ('[tasks_api]\ntoken = "t"\nrate_limt = 5\n',
         "fragment.toml: tasks_api.rate_limt: unknown key (did you mean 'rate_limit'?)"),
        (TASKS_API + "[statee]\n", "fragment.toml: statee: unknown key (did you mean 'state'?)"),
        ("[tasks_api\n", "fragment.toml: invalid TOML: Expected ']' at the end of a table "
         "declaration (at line 1, column 11)"),
        ('sources = "all"\n' + TASKS_API,
         "fragment.toml: sources: expected an array of tables ([[sources]] blocks)"),
    ],
    ids=[
        "field-required", "unknown-key", "bad-type", "official-not-installed", "unknown-connector",
        "bad-duration", "bad-name", "no-name", "no-token", "unknown-api-key", "unknown-table",
        "bad-toml", "sources-not-array",
    ],
)  # fmt: skip
def test_error_messages(
    tmp_path: Path, registry: ConnectorRegistry, text: str, expected: str
) -> None:
    assert error_of(write(tmp_path, text), registry) == expected


def test_duplicate_source_names(tmp_path: Path, registry: ConnectorRegistry) -> None:
    options = '[sources.options]\nsubdomain = "x"\ntoken = "t"\n'
    text = TASKS_API + (SOURCE.format(name="support", connector="desk") + options) * 2
    assert error_of(write(tmp_path, text), registry) == (
        'fragment.toml: sources[1] "support" (desk): name: duplicate source name "support" '
        "(also sources[0])"
    )


def test_every_broken_source_is_reported_at_once(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    text = TASKS_API + SOURCE.format(name="support", connector="desk")
    text += '[sources.options]\ntoken = "x"\n'
    text += SOURCE.format(name="ok", connector="desk") + '[sources.options]\nsubdomain = "x"\n'
    text += 'token = "x"\n' + SOURCE.format(name="kyc", connector="zendesk")
    assert error_of(write(tmp_path, text), registry).splitlines() == [
        'fragment.toml: sources[0] "support" (desk): options.subdomain: field required',
        "fragment.toml: sources[2] \"kyc\" (zendesk): connector: connector 'zendesk' is not "
        "installed; it is provided by the package fragment-zendesk: "
        "pip install ./plugins/fragment-zendesk (from a clone of the fragment-core repository)",
    ]


def test_missing_env_var_names_variable_and_key(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    text = TASKS_API + SOURCE.format(name="support", connector="desk")
    text += '[sources.options]\nsubdomain = "x"\ntoken = "${DESK_TOKEN}"\n'
    assert error_of(write(tmp_path, text), registry) == (
        'fragment.toml: sources[0] "support" (desk): options.token: environment variable '
        "DESK_TOKEN is not set (used as ${DESK_TOKEN})"
    )
    path = write(tmp_path, '[tasks_api]\ntoken = "${}"\n')
    assert error_of(path, registry) == (
        "fragment.toml: tasks_api.token: invalid environment variable reference ${}"
    )
    # an empty variable falls back to the default, like the shell's ${VAR:-default}
    path = write(tmp_path, '[tasks_api]\ntoken = "${EMPTY:-fallback}"\n')
    settings = load_settings(path, registry=registry, env={"EMPTY": ""})
    assert settings.tasks_api.token.get_secret_value() == "fallback"


def test_secret_file_errors(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(tmp_path, '[tasks_api]\ntoken_file = "missing-token"\n')
    assert error_of(path, registry) == (
        "fragment.toml: tasks_api.token_file: cannot read secret file missing-token: "
        "No such file or directory"
    )
    path = write(tmp_path, '[tasks_api]\ntoken = "a"\ntoken_file = "f"\n')
    assert error_of(path, registry) == (
        "fragment.toml: tasks_api.token_file: set either token or token_file, not both"
    )


def test_missing_file(tmp_path: Path, registry: ConnectorRegistry) -> None:
    assert error_of(tmp_path / "nope.toml", registry) == (
        f"{tmp_path / 'nope.toml'}: configuration file not found "
        "(give a path, --config or $FRAGMENT_CONFIG)"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2h", 7200), ("1d", 86400), (90, 90), ("45", 45)],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "5 minutes", "1m1h", 0, -5, True, 1.5])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_close_window_is_a_duration_with_a_24h_default() -> None:
    from fragment_core.config import ClosePolicy

    assert ClosePolicy().window == timedelta(hours=24)
    assert ClosePolicy(window="6h").window == timedelta(hours=6)
    assert ClosePolicy.model_validate({"window": 3600}).window == timedelta(hours=1)
    with pytest.raises(ValueError, match="invalid duration"):
        ClosePolicy(window="soon")
