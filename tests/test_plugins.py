"""The plugin manager: built-ins, entry points, allow/block lists, broken plugins, registry."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fragment_core.connector import Connector, ConnectorConfig
from fragment_core.errors import ConfigurationError, PluginError
from fragment_core.plugins import (
    BUILTIN_PLUGINS,
    ConnectorRegistry,
    PluginInfo,
    PluginLoadWarning,
    get_plugin_manager,
    get_registry,
    new_plugin_manager,
)

CONNECTOR_PLUGIN = """
from fragment_core import hookimpl
from fragment_core.connector import Connector


class {cls}(Connector):
    \"\"\"{cls} connector.\"\"\"

    name = {name!r}


@hookimpl
def fragment_register_connectors(register):
    register({cls})
"""


def install_fake_dist(
    site: Path, dist: str, version: str, plugins: dict[str, str], modules: dict[str, str]
) -> None:
    """Write an installed distribution (dist-info + modules) into ``site``."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = [f"{name} = {module}" for name, module in plugins.items()]
    (info / "entry_points.txt").write_text("[fragment]\n" + "\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path where fake distributions are installed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def only(*names: str) -> dict[str, str]:
    """An environment that allows only ``names`` (so other installed plugins stay out)."""
    return {"FRAGMENT_LOAD_PLUGINS": ",".join(names)}


def third_party(registry: ConnectorRegistry) -> list[str]:
    """Names of the connectors registered by non-built-in plugins."""
    return [e.name for e in registry.all() if not e.plugin.builtin]


def connector_module(cls: str, name: str) -> str:
    return CONNECTOR_PLUGIN.format(cls=cls, name=name)


def test_builtins_are_registered_first_and_marked() -> None:
    pm = new_plugin_manager(env=only())
    infos = [info for _, info in pm.plugins_in_order()]
    assert [i.name for i in infos] == list(BUILTIN_PLUGINS)
    assert all(i.builtin and i.distribution == "fragment-core" for i in infos)


def test_get_plugin_manager_is_cached() -> None:
    assert get_plugin_manager() is get_plugin_manager()
    assert get_registry() is get_registry()


def test_entry_point_plugin_is_loaded_with_its_distribution(site: Path) -> None:
    install_fake_dist(
        site, "fragment-rocket", "2.0.1", {"rocket": "tp_rocket"},
        {"tp_rocket": connector_module("Rocket", "rocket")},
    )  # fmt: skip
    pm = new_plugin_manager(env=only("rocket"))
    registry = get_registry(pm)
    entry = registry.entry("rocket")
    assert (entry.distribution, entry.version, entry.plugin.name) == (
        "fragment-rocket",
        "2.0.1",
        "rocket",
    )
    assert pm.hooks_of(pm.get_plugin("rocket")) == ["fragment_register_connectors"]


def test_failing_plugin_warns_with_distribution_and_error_and_others_load(site: Path) -> None:
    install_fake_dist(site, "fragment-broken", "0.1", {"broken": "tp_broken"},
                      {"tp_broken": "import does_not_exist_anywhere\n"})  # fmt: skip
    install_fake_dist(site, "fragment-fine", "0.2", {"fine": "tp_fine"},
                      {"tp_fine": connector_module("Fine", "fine")})  # fmt: skip
    with pytest.warns(PluginLoadWarning) as caught:
        pm = new_plugin_manager(env=only("broken", "fine"))
    message = str(caught[0].message)
    assert "plugin 'broken' from distribution fragment-broken failed to load" in message
    assert "ModuleNotFoundError: No module named 'does_not_exist_anywhere'" in message
    assert pm.load_failures == [message]
    assert "fine" in get_registry(pm)


def test_allow_list_by_entry_point_or_distribution_name(site: Path) -> None:
    install_fake_dist(site, "fragment-one", "1", {"one": "tp_one"},
                      {"tp_one": connector_module("One", "one")})  # fmt: skip
    install_fake_dist(site, "fragment-two", "1", {"two": "tp_two"},
                      {"tp_two": connector_module("Two", "two")})  # fmt: skip
    assert third_party(get_registry(new_plugin_manager(env=only("one")))) == ["one"]
    assert third_party(get_registry(new_plugin_manager(env=only("Fragment_Two")))) == ["two"]
    assert third_party(get_registry(new_plugin_manager(env=only(" one , two ")))) == ["one", "two"]
    # an empty allow-list means no third-party plugins, built-ins only
    pm = new_plugin_manager(env={"FRAGMENT_LOAD_PLUGINS": ""})
    assert not pm.has_plugin("one") and not pm.has_plugin("two")
    assert all(info.builtin for _, info in pm.plugins_in_order())


def test_block_list_wins_over_allow_list(site: Path) -> None:
    install_fake_dist(site, "fragment-one", "1", {"one": "tp_one_b"},
                      {"tp_one_b": connector_module("One", "one")})  # fmt: skip
    install_fake_dist(site, "fragment-two", "1", {"two": "tp_two_b"},
                      {"tp_two_b": connector_module("Two", "two")})  # fmt: skip
    env = {"FRAGMENT_LOAD_PLUGINS": "one,two", "FRAGMENT_DISABLE_PLUGINS": "fragment-one"}
    assert third_party(get_registry(new_plugin_manager(env=env))) == ["two"]


def test_misspelled_hook_fails_loudly_naming_the_plugin(site: Path) -> None:
    install_fake_dist(site, "fragment-typo", "0.3", {"typo": "tp_typo"}, {"tp_typo": """
        def fragment_transfrom_task(task, record, source):
            return None
    """})  # fmt: skip
    with pytest.raises(PluginError) as excinfo:
        new_plugin_manager(env=only("typo"))
    assert str(excinfo.value) == (
        "plugin 'typo' (fragment-typo 0.3): fragment_transfrom_task is not a fragment hook "
        "(did you mean fragment_transform_task?)"
    )


def test_hook_with_wrong_arguments_names_the_plugin(site: Path) -> None:
    install_fake_dist(site, "fragment-args", "0.1", {"args": "tp_args"}, {"tp_args": """
        def fragment_sync_finished(report, extra):
            pass
    """})  # fmt: skip
    with pytest.raises(
        PluginError,
        match=r"^plugin 'args' \(fragment-args 0.1\) is invalid: hookimpl definition: "
        r"fragment_sync_finished\(report, extra\); Argument\(s\) \{'extra'\} are declared",
    ):
        new_plugin_manager(env=only("args"))


def test_two_connectors_with_one_name_name_both_packages(site: Path) -> None:
    install_fake_dist(site, "fragment-alpha", "1.0", {"alpha": "tp_alpha"},
                      {"tp_alpha": connector_module("AlphaTickets", "tickets")})  # fmt: skip
    install_fake_dist(site, "fragment-beta", "2.0", {"beta": "tp_beta"},
                      {"tp_beta": connector_module("BetaTickets", "tickets")})  # fmt: skip
    pm = new_plugin_manager(env=only("alpha", "beta"))
    with pytest.raises(PluginError) as excinfo:
        get_registry(pm)
    message = str(excinfo.value)
    assert message.startswith("connector name 'tickets' is claimed by two packages: ")
    assert "fragment-alpha 1.0 (tp_alpha.AlphaTickets)" in message
    assert "fragment-beta 2.0 (tp_beta.BetaTickets)" in message
    assert "FRAGMENT_DISABLE_PLUGINS" in message


def test_registering_something_that_is_not_a_connector_names_the_plugin() -> None:
    registry = ConnectorRegistry()
    with pytest.raises(PluginError, match=r"plugin 'x' \(fragment-x 1\) registered 'oops'"):
        registry.add("oops", PluginInfo("x", "x", "fragment-x", "1"))  # type: ignore[arg-type]

    class Nameless(Connector[ConnectorConfig]):
        pass

    with pytest.raises(PluginError, match="without a name"):
        registry.add(Nameless, PluginInfo("x", "x"))


def test_official_connector_not_installed_gives_pip_command() -> None:
    registry = ConnectorRegistry()
    with pytest.raises(ConfigurationError) as excinfo:
        registry.get("zendesk")
    assert str(excinfo.value) == (
        "connector 'zendesk' is not installed; it is provided by the package "
        "fragment-zendesk: pip install ./plugins/fragment-zendesk"
        " (from a clone of the fragment-core repository)"
    )
    assert registry.not_installed()["complyadvantage"] == "fragment-complyadvantage"


def test_unknown_connector_lists_the_known_ones() -> None:
    class Tickets(Connector[ConnectorConfig]):
        name = "tickets"

    registry = ConnectorRegistry()
    registry.add(Tickets, PluginInfo("t", "t"))
    with pytest.raises(ConfigurationError) as excinfo:
        registry.get("tikets")
    assert str(excinfo.value) == (
        "unknown connector 'tikets' (did you mean 'tickets'?); known connectors: "
        "complyadvantage, complyadvantage-mesh, hubspot, intercom, stripe, stripe-efw, tickets, "
        "zendesk"
    )
