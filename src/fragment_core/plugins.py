"""The plugin manager: built-in plugins, the ``fragment`` entry-point group, allow/block lists.

Built-in plugin modules are registered first (like pytest's default plugins), then every
entry point of the ``fragment`` group is imported one by one: a plugin that fails to import
gives a :class:`PluginLoadWarning` naming its distribution and the error, and the others
still load. ``FRAGMENT_LOAD_PLUGINS`` (comma-separated allow-list of entry-point or
distribution names; empty = no third-party plugins) and ``FRAGMENT_DISABLE_PLUGINS``
(block-list) select which third-party plugins load.

:class:`ConnectorRegistry` collects the connector classes that plugins register through
``fragment_register_connectors`` and knows the official connector packages that are not
installed. :func:`transform_task` and the ``notify_*`` helpers call the other hooks.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

import pluggy
from pluggy import HookImpl, HookimplOpts, PluginValidationError
from pydantic import BaseModel

from fragment_core import __version__, hookspecs
from fragment_core.connector import Connector
from fragment_core.errors import ConfigurationError, FragmentError, PluginError
from fragment_core.task import Task

if TYPE_CHECKING:
    from fragment_core.config import SourceSettings
    from fragment_core.connector import Record
    from fragment_core.reports import SyncReport, WriteBackOutcome
    from fragment_core.task import RemoteTask

__all__ = [
    "BUILTIN_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "LOAD_ENV",
    "OFFICIAL_CONNECTORS",
    "ConnectorEntry",
    "ConnectorRegistry",
    "FragmentPluginManager",
    "PluginInfo",
    "PluginLoadWarning",
    "get_plugin_manager",
    "get_registry",
    "install_command",
    "new_plugin_manager",
    "notify_sync_finished",
    "notify_task_written_back",
    "transform_task",
]

log = logging.getLogger(__name__)

#: Entry-point group third-party plugins register under.
ENTRY_POINT_GROUP = "fragment"
#: Allow-list of third-party plugins (entry-point or distribution names, comma-separated).
LOAD_ENV = "FRAGMENT_LOAD_PLUGINS"
#: Block-list of third-party plugins (entry-point or distribution names, comma-separated).
DISABLE_ENV = "FRAGMENT_DISABLE_PLUGINS"
#: Built-in plugin modules, always registered (in this order).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "fragment_core.connectors.file",
    "fragment_core.connectors.http",
)
#: Official connector packages: connector name -> distribution that provides it.
OFFICIAL_CONNECTORS: Mapping[str, str] = {
    "hubspot": "fragment-hubspot",
    "stripe": "fragment-stripe",
    "stripe-efw": "fragment-stripe",
    "zendesk": "fragment-zendesk",
    "intercom": "fragment-intercom",
    "complyadvantage": "fragment-complyadvantage",
    "complyadvantage-mesh": "fragment-complyadvantage",
}
_CORE_DISTRIBUTION = "fragment-core"
_HOOK_PREFIX = "fragment_"


def install_command(dist: str) -> str:
    """How to install an official package: from the repository, until it is published."""
    return f"pip install ./plugins/{dist} (from a clone of the fragment-core repository)"


class PluginLoadWarning(UserWarning):
    """A third-party plugin could not be imported; the other plugins were loaded."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin comes from."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False

    @property
    def package(self) -> str:
        """``distribution version`` when known, else the plugin's module."""
        if self.distribution is None:
            return f"module {self.module}"
        return f"{self.distribution} {self.version}" if self.version else self.distribution


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).strip().lower()


def _name_list(value: str) -> set[str]:
    return {_normalize(part) for part in value.split(",") if part.strip()}


class FragmentPluginManager(pluggy.PluginManager):
    """A pluggy manager that knows where each plugin comes from.

    Any function named ``fragment_*`` in a plugin is a hook implementation, marked or
    not, so a misspelled hook name is caught by :meth:`check_pending` instead of being
    silently ignored.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.plugin_info: dict[str, PluginInfo] = {}
        self.load_failures: list[str] = []

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(_HOOK_PREFIX):
            method = getattr(plugin, name, None)
            if inspect.isroutine(method):
                opts = HookimplOpts(
                    wrapper=False,
                    hookwrapper=False,
                    optionalhook=False,
                    tryfirst=False,
                    trylast=False,
                    specname=None,
                )
        return opts

    def info(self, plugin: object) -> PluginInfo:
        """What is known about a registered plugin object."""
        name = self.get_name(plugin) or repr(plugin)
        known = self.plugin_info.get(name)
        if known is not None:
            return known
        module = getattr(plugin, "__name__", None) or type(plugin).__module__
        return PluginInfo(name=name, module=str(module))

    def register_plugin(self, plugin: object, info: PluginInfo) -> None:
        """Register ``plugin`` and remember where it comes from.

        Raises :class:`PluginError` naming the plugin when pluggy refuses it (a hook
        implementation whose arguments do not match the hook).
        """
        try:
            self.register(plugin, name=info.name)
        except PluginValidationError as exc:
            lines = [line.strip() for line in str(exc).splitlines()]
            detail = "; ".join(lines[1:]) or str(exc)  # line 0 repeats the plugin's name
            raise PluginError(
                f"plugin {info.name!r} ({info.package}) is invalid: {detail}"
            ) from exc
        except ValueError as exc:
            raise PluginError(f"plugin {info.name!r} ({info.package}): {exc}") from exc
        self.plugin_info[info.name] = info

    def check_pending(self) -> None:
        """Fail with a :class:`PluginError` naming the plugin and the unknown hook."""
        try:
            super().check_pending()
        except PluginValidationError as exc:
            info = self.info(exc.plugin)
            unknown = sorted(
                name
                for name, caller in vars(self.hook).items()
                if not name.startswith("_")
                and isinstance(caller, pluggy.HookCaller)
                and not caller.has_spec()
                and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
            )
            hooks = sorted(
                name
                for name, caller in vars(self.hook).items()
                if isinstance(caller, pluggy.HookCaller) and caller.has_spec()
            )
            parts = []
            for name in unknown:
                hint = difflib.get_close_matches(name, hooks, n=1)
                suffix = f" (did you mean {hint[0]}?)" if hint else ""
                parts.append(f"{name} is not a fragment hook{suffix}")
            detail = "; ".join(parts) or str(exc)
            raise PluginError(f"plugin {info.name!r} ({info.package}): {detail}") from exc

    def plugins_in_order(self) -> list[tuple[object, PluginInfo]]:
        """Registered plugins with their info, built-ins first, in registration order."""
        return [(plugin, self.info(plugin)) for _, plugin in self.list_name_plugin()]

    def hooks_of(self, plugin: object) -> list[str]:
        """Names of the hooks ``plugin`` implements."""
        return sorted(caller.name for caller in self.get_hookcallers(plugin) or [])


def _load_builtins(pm: FragmentPluginManager) -> None:
    for module_name in BUILTIN_PLUGINS:
        module = import_module(module_name)
        info = PluginInfo(
            name=module_name,
            module=module_name,
            distribution=_CORE_DISTRIBUTION,
            version=__version__,
            builtin=True,
        )
        pm.register_plugin(module, info)


def _selected(ep: EntryPoint, allow: set[str] | None, block: set[str]) -> bool:
    names = {_normalize(ep.name)}
    if ep.dist is not None:
        names.add(_normalize(ep.dist.name))
    if names & block:
        return False
    return allow is None or bool(names & allow)


def _load_entry_points(pm: FragmentPluginManager, env: Mapping[str, str]) -> None:
    allow_value = env.get(LOAD_ENV)
    allow = None if allow_value is None else _name_list(allow_value)
    block = _name_list(env.get(DISABLE_ENV, ""))
    seen: set[tuple[str | None, str]] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        if (dist, ep.name) in seen or not _selected(ep, allow, block):
            continue
        seen.add((dist, ep.name))
        info = PluginInfo(name=ep.name, module=ep.value, distribution=dist, version=version)
        if pm.has_plugin(ep.name):
            raise PluginError(
                f"plugin name {ep.name!r} is used twice: by {info.package} and by "
                f"{pm.plugin_info[ep.name].package}"
            )
        try:
            plugin = ep.load()
        except Exception as exc:
            message = (
                f"plugin {ep.name!r} from distribution {dist or 'unknown'} failed to load "
                f"and was skipped: {type(exc).__name__}: {exc}"
            )
            pm.load_failures.append(message)
            warnings.warn(message, PluginLoadWarning, stacklevel=3)
            continue
        pm.register_plugin(plugin, info)


def new_plugin_manager(
    *, entrypoints: bool = True, env: Mapping[str, str] | None = None
) -> FragmentPluginManager:
    """A fresh plugin manager: hookspecs, built-ins, then third-party plugins.

    ``env`` defaults to :data:`os.environ` (read for the allow/block lists);
    ``entrypoints=False`` registers the built-ins only. Raises :class:`PluginError` when a
    plugin is invalid (e.g. implements a hook that does not exist).
    """
    pm = FragmentPluginManager()
    _load_builtins(pm)
    if entrypoints:
        _load_entry_points(pm, os.environ if env is None else env)
    pm.check_pending()
    return pm


@functools.cache
def get_plugin_manager() -> FragmentPluginManager:
    """The process-wide plugin manager (built once; ``get_plugin_manager.cache_clear()``)."""
    return new_plugin_manager()


# -- connectors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorEntry:
    """A registered connector class and the package that registered it."""

    name: str
    cls: type[Connector[Any]]
    plugin: PluginInfo

    @property
    def distribution(self) -> str | None:
        """The distribution that registered the connector, when known."""
        return self.plugin.distribution

    @property
    def version(self) -> str | None:
        """The version of that distribution, when known."""
        return self.plugin.version

    @property
    def capabilities(self) -> list[str]:
        """The connector's capabilities, sorted."""
        return sorted(str(c) for c in self.cls.capabilities())


@dataclass
class ConnectorRegistry:
    """Connector classes by name, as registered through ``fragment_register_connectors``."""

    entries: dict[str, ConnectorEntry] = field(default_factory=dict)

    @classmethod
    def from_plugin_manager(cls, pm: FragmentPluginManager) -> ConnectorRegistry:
        """Call ``fragment_register_connectors`` through the plugin manager's hook caller.

        pluggy orders the implementations (``tryfirst``/``trylast``, last registered
        first), runs ``wrapper=True`` ones around them and traces the call. Each class is
        attributed to the plugin whose code called ``register`` (found on the call stack),
        and an implementation that fails is a :class:`PluginError` naming its plugin.
        """
        registry = cls()
        plugins = {id(plugin): plugin for plugin in pm.get_plugins()}

        def register(connector_cls: type[Connector[Any]]) -> None:
            plugin = _plugin_on_stack(_frames(sys._getframe(1)), plugins)
            registry.add(connector_cls, pm.info(plugin) if plugin is not None else _UNKNOWN)

        try:
            pm.hook.fragment_register_connectors(register=register)
        except FragmentError:
            raise
        except Exception as exc:
            plugin = _plugin_on_stack(_traceback_frames(exc.__traceback__), plugins)
            info = pm.info(plugin) if plugin is not None else _UNKNOWN
            raise PluginError(
                f"plugin {info.name!r} ({info.package}) failed in "
                f"fragment_register_connectors: {type(exc).__name__}: {exc}"
            ) from exc
        return registry

    def add(self, connector_cls: type[Connector[Any]], plugin: PluginInfo) -> None:
        """Add one class; a name claimed by another class is a :class:`PluginError`."""
        if not (isinstance(connector_cls, type) and issubclass(connector_cls, Connector)):
            raise PluginError(
                f"plugin {plugin.name!r} ({plugin.package}) registered {connector_cls!r}, "
                "which is not a Connector subclass"
            )
        name = connector_cls.name
        if not name:
            raise PluginError(
                f"plugin {plugin.name!r} ({plugin.package}) registered "
                f"{_qualname(connector_cls)} without a name (set the class attribute `name`)"
            )
        existing = self.entries.get(name)
        if existing is not None:
            if existing.cls is connector_cls:
                return
            raise PluginError(
                f"connector name {name!r} is claimed by two packages: "
                f"{existing.plugin.package} ({_qualname(existing.cls)}) and "
                f"{plugin.package} ({_qualname(connector_cls)}); uninstall one of them or "
                f"disable its plugin with {DISABLE_ENV}"
            )
        self.entries[name] = ConnectorEntry(name=name, cls=connector_cls, plugin=plugin)

    def get(self, name: str) -> type[Connector[Any]]:
        """The connector class called ``name``.

        Raises :class:`ConfigurationError` with the ``pip install`` command for an
        official connector that is not installed, or the list of known names otherwise.
        """
        return self.entry(name).cls

    def options_model(self, name: str) -> type[BaseModel]:
        """The pydantic model of the options of connector ``name`` (its ``Config``)."""
        return self.get(name).Config

    def validate_options(self, name: str, options: Any) -> BaseModel:
        """``options`` validated by connector ``name``; raises pydantic's ``ValidationError``."""
        return self.options_model(name).model_validate(options)

    def build(self, source: SourceSettings) -> Connector[Any]:
        """Instantiate the connector of ``source`` with its validated options."""
        cls = self.get(source.connector)
        options = source.options if source.options is not None else cls.Config()
        return cls(options, source=source.name)

    def entry(self, name: str) -> ConnectorEntry:
        """The registry entry of ``name`` (same errors as :meth:`get`)."""
        entry = self.entries.get(name)
        if entry is not None:
            return entry
        if name in OFFICIAL_CONNECTORS:
            dist = OFFICIAL_CONNECTORS[name]
            raise ConfigurationError(
                f"connector {name!r} is not installed; it is provided by the package "
                f"{dist}: {install_command(dist)}"
            )
        known = sorted(set(self.entries) | set(OFFICIAL_CONNECTORS))
        hint = difflib.get_close_matches(name, known, n=1)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigurationError(
            f"unknown connector {name!r}{suffix}; known connectors: {', '.join(known)}"
        )

    def all(self) -> list[ConnectorEntry]:
        """Every registered connector, sorted by name."""
        return [self.entries[name] for name in sorted(self.entries)]

    def names(self) -> list[str]:
        """Names of the registered connectors, sorted."""
        return sorted(self.entries)

    def not_installed(self) -> dict[str, str]:
        """Official connectors that are not registered: name -> distribution."""
        return {n: d for n, d in OFFICIAL_CONNECTORS.items() if n not in self.entries}

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[ConnectorEntry]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self.entries)


def get_registry(pm: FragmentPluginManager | None = None) -> ConnectorRegistry:
    """The connector registry of ``pm`` (default: the process-wide manager), built once."""
    pm = pm or get_plugin_manager()
    registry = getattr(pm, "_fragment_registry", None)
    if registry is None:
        registry = ConnectorRegistry.from_plugin_manager(pm)
        pm._fragment_registry = registry  # type: ignore[attr-defined]
    return registry


# -- calling the other hooks ------------------------------------------------------------


def _call_order(impls: Iterable[HookImpl]) -> list[HookImpl]:
    # pluggy calls the last registered (and tryfirst) implementations first
    return [i for i in reversed(list(impls)) if not (i.hookwrapper or i.wrapper)]


def _hook_kwargs(impl: HookImpl, **available: Any) -> dict[str, Any]:
    return {name: available[name] for name in impl.argnames}


#: Who registered a class when no plugin's code is on the stack (a lambda passed around).
_UNKNOWN = PluginInfo(name="unknown", module="unknown")


def _frames(frame: FrameType | None) -> Iterator[FrameType]:
    """``frame`` and its callers, innermost first."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def _traceback_frames(tb: TracebackType | None) -> Iterator[FrameType]:
    """The frames of a traceback, innermost first."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return reversed(frames)


def _plugin_on_stack(frames: Iterable[FrameType], plugins: Mapping[int, object]) -> object | None:
    """The registered plugin whose code runs in the innermost of ``frames``: a plugin
    module's function, or a method of a plugin object."""
    for frame in frames:
        module = sys.modules.get(str(frame.f_globals.get("__name__")))
        for candidate in (module, frame.f_locals.get("self")):
            if candidate is not None and id(candidate) in plugins:
                return plugins[id(candidate)]
    return None


def _qualname(obj: type) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _through_pluggy(
    pm: FragmentPluginManager, hook: str, body: Callable[..., Any], **kwargs: Any
) -> Any:
    """Call ``hook`` through the plugin manager with ``body`` in place of its plain impls.

    The plain implementations are run by ``body`` (which chains or isolates them); the
    ``wrapper=True`` / ``hookwrapper=True`` implementations stay in the call and wrap
    ``body``, and the call goes through pluggy's hook execution, so tracing
    (``pm.enable_tracing()``) and call monitoring see it. Each plugin implements a hook at
    most once, so removing the plugins of the plain implementations keeps every wrapper.
    """
    caller = getattr(pm.hook, hook)
    plain = [i.plugin for i in caller.get_hookimpls() if not (i.hookwrapper or i.wrapper)]
    subset = pm.subset_hook_caller(hook, remove_plugins=plain)
    return subset.call_extra([body], kwargs)


def transform_task(
    pm: FragmentPluginManager, task: Task, record: Record, source: SourceSettings
) -> Task | None:
    """Run the ``fragment_transform_task`` chain; return the final task, or ``None`` if dropped.

    The call goes through the plugin manager: ``tryfirst``/``trylast`` order the chain,
    ``wrapper=True`` implementations wrap the whole chain (``result = yield`` receives the
    final :class:`Task`, or ``False`` when dropped, and may return another), and tracing
    sees the call. Each plain implementation receives the previous one's result: ``None``
    leaves the task as it is, ``False`` drops it (the chain stops), a :class:`Task`
    replaces it. Any other return value, or an unexpected exception, is a
    :class:`PluginError` naming the plugin; a :class:`FragmentError` (e.g.
    :class:`BadRecordError`) raised by a plugin propagates.
    """
    impls = _call_order(pm.hook.fragment_transform_task.get_hookimpls())

    def chain(task: Task, record: Record, source: SourceSettings) -> Task | Literal[False]:
        return _chain(pm, impls, task, record, source)

    result = _through_pluggy(
        pm, "fragment_transform_task", chain, task=task, record=record, source=source
    )
    if result is False:
        return None
    if not isinstance(result, Task):
        raise PluginError(
            f"a wrapper of fragment_transform_task returned {type(result).__name__}; "
            "expected a Task or False (drop)"
        )
    return result


def _chain(
    pm: FragmentPluginManager,
    impls: list[HookImpl],
    task: Task,
    record: Record,
    source: SourceSettings,
) -> Task | Literal[False]:
    current = task
    for impl in impls:
        info = pm.info(impl.plugin)
        try:
            result = impl.function(**_hook_kwargs(impl, task=current, record=record, source=source))
        except FragmentError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {info.name!r} ({info.package}) failed in fragment_transform_task "
                f"for record {current.external_id!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            continue
        if result is False:
            return False
        if not isinstance(result, Task):
            raise PluginError(
                f"plugin {info.name!r} ({info.package}): fragment_transform_task returned "
                f"{type(result).__name__}; expected a Task, None (unchanged) or False (drop)"
            )
        current = result
    return current


def _notify(pm: FragmentPluginManager, hook: str, **kwargs: Any) -> list[str]:
    errors: list[str] = []
    impls = _call_order(getattr(pm.hook, hook).get_hookimpls())

    def each(**given: Any) -> None:
        for impl in impls:
            try:
                impl.function(**_hook_kwargs(impl, **given))
            except Exception as exc:
                info = pm.info(impl.plugin)
                message = f"plugin {info.name!r} ({info.package}) failed in {hook}: " + (
                    f"{type(exc).__name__}: {exc}"
                )
                log.warning(message)
                errors.append(message)

    # pluggy passes a body its arguments by parameter name: one body per observer hook
    bodies: dict[str, Callable[..., None]] = {
        "fragment_sync_finished": lambda report: each(report=report),
        "fragment_task_written_back": lambda task, outcome: each(task=task, outcome=outcome),
    }
    _through_pluggy(pm, hook, bodies[hook], **kwargs)
    return errors


def notify_sync_finished(pm: FragmentPluginManager, report: SyncReport) -> list[str]:
    """Call every ``fragment_sync_finished`` observer.

    A failing observer is logged and does not stop the others; returns their error messages.
    """
    return _notify(pm, "fragment_sync_finished", report=report)


def notify_task_written_back(
    pm: FragmentPluginManager, task: RemoteTask, outcome: WriteBackOutcome
) -> list[str]:
    """Call every ``fragment_task_written_back`` observer (errors as in notify_sync_finished)."""
    return _notify(pm, "fragment_task_written_back", task=task, outcome=outcome)
