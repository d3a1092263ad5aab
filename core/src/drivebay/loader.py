"""Find drivers by entry point (stevedore) and check them against their hookspecs (pluggy).

Listing reads entry-point metadata only and imports nothing. Loading imports
exactly the one driver that config selects, instantiates it, registers it in a
fresh :class:`pluggy.PluginManager` holding its kind's hookspecs, and checks
that every required hook is implemented with the spec's parameter names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy
from stevedore import driver as stevedore_driver
from stevedore.exception import NoMatches
from stevedore.extension import ExtensionManager
from stevedore.named import NamedExtensionManager

from drivebay.dockerplugin import plugin_name
from drivebay.errors import DrivebayError, DriverContractError, DriverNotFound
from drivebay.hookspecs import PROJECT
from drivebay.tracing import TimingTracer

WRAPPER_GROUP = "drivebay.wrappers"


@dataclass(frozen=True)
class DriverKind:
    """One of the four driver kinds and the module holding its contract (imported on first use).

    A command uses one or two kinds; importing the other hookspec modules, with their dataclasses,
    would cost it start-up time for nothing.
    """

    name: str
    spec_module: str

    @property
    def spec(self) -> ModuleType:
        return importlib.import_module(self.spec_module)

    @property
    def group(self) -> str:
        return str(self.spec.GROUP)

    @property
    def prefix(self) -> str:
        return str(self.spec.PREFIX)

    @property
    def required_hooks(self) -> tuple[str, ...]:
        return tuple(self.spec.REQUIRED_HOOKS)

    @property
    def probe_hook(self) -> str:
        return str(self.spec.PROBE_HOOK)

    @property
    def distribution_prefix(self) -> str:
        return {"graph": "graphdriver", "volume": "volumedriver", "network": "netdriver", "log": "logdriver"}[self.name]


KINDS: dict[str, DriverKind] = {
    kind.name: kind
    for kind in (
        DriverKind("graph", "drivebay.hookspecs.graph"),
        DriverKind("volume", "drivebay.hookspecs.volume"),
        DriverKind("network", "drivebay.hookspecs.network"),
        DriverKind("log", "drivebay.hookspecs.log"),
    )
}


@dataclass(frozen=True)
class InstalledDriver:
    """A driver found in entry-point metadata, not imported."""

    kind: str
    name: str
    distribution: str
    version: str
    target: str


@dataclass
class LoadedDriver:
    """A driver instance registered and validated in its own plugin manager."""

    kind: DriverKind
    name: str
    plugin: object
    manager: pluggy.PluginManager
    tracer: TimingTracer | None
    """The timing tracer, when the driver was loaded with ``timing`` or ``echo_timings``."""

    @property
    def hook(self) -> Any:
        return self.manager.hook


def installed_drivers(kind: DriverKind) -> list[InstalledDriver]:
    """Every driver of ``kind`` that an installed distribution declares, sorted by name."""
    found: dict[str, InstalledDriver] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == kind.group and ep.name not in found:
                found[ep.name] = InstalledDriver(
                    kind=kind.name,
                    name=ep.name,
                    distribution=dist.metadata["Name"],
                    version=dist.version,
                    target=ep.value,
                )
    return [found[name] for name in sorted(found)]


def installed_driver_names(kind: DriverKind) -> list[str]:
    """The names of the installed drivers of ``kind``, sorted, from stevedore's entry-point cache.

    Cheaper than :func:`installed_drivers`, which reads every distribution's metadata: a selection
    that needs only the names runs on every command.
    """
    # No names asked for: stevedore lists the group's entry points and loads none of them.
    listing: NamedExtensionManager[object] = NamedExtensionManager(kind.group, names=[])
    return sorted(set(listing.entry_points_names()))


def suggested_distribution(kind: DriverKind, name: str) -> str:
    """The pip distribution that would provide driver ``name``, by drivebay's naming rule."""
    return f"drivebay-{kind.distribution_prefix}-{name.replace('_', '-')}"


def _not_found(kind: DriverKind, name: str) -> DriverNotFound:
    names = ", ".join(d.name for d in installed_drivers(kind)) or "none"
    return DriverNotFound(
        f"no {kind.name} driver named '{name}' is installed (installed: {names}); "
        f"install it with 'pip install {suggested_distribution(kind, name)}' or choose an installed one"
    )


def load_driver(kind: DriverKind, name: str, *, timing: bool = False, echo_timings: bool = False) -> LoadedDriver:
    """Import, instantiate, register and validate driver ``name`` of ``kind``.

    The timing tracer wraps every hook only when asked: ``timing`` (``drivebay
    bench`` reads its totals) or ``echo_timings`` (``--debug`` prints each call).
    Otherwise hooks run unwrapped, since the wrapper costs a few percent of a
    call as short as an overlay2 mount.

    Raises ``DriverNotFound`` (with the installed names and the pip
    distribution to install) or ``DriverContractError`` naming the hook.
    """
    remote = plugin_name(name)
    plugin = _instantiate(kind, name) if remote is None else _docker_plugin_driver(kind, remote)
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(kind.spec)
    try:
        manager.register(plugin, name=f"{kind.name}:{name}")
    except pluggy.PluginValidationError as exc:
        raise DriverContractError(
            f"{kind.name} driver '{name}' does not match drivebay's hookspecs: {exc}; "
            f"fix the hook's parameters to match drivebay.hookspecs.{kind.spec.__name__.rsplit('.', 1)[-1]}"
        ) from exc
    check_contract(kind, name, plugin)
    tracer = None
    if timing or echo_timings:
        tracer = TimingTracer.for_kind(kind.spec, echo=echo_timings)
        manager.register(tracer, name="drivebay:timing-tracer")
    for wrapper in _load_wrappers():
        manager.register(wrapper)
    return LoadedDriver(kind=kind, name=name, plugin=plugin, manager=manager, tracer=tracer)


def _docker_plugin_driver(kind: DriverKind, plugin: str) -> object:
    """The driver calling Docker plugin ``plugin``, for a driver name ``docker-plugin:NAME``."""
    from drivebay.dockerplugin.remote import remote_driver

    return remote_driver(kind.name, plugin)


def _instantiate(kind: DriverKind, name: str) -> object:
    try:
        manager_ext: stevedore_driver.DriverManager[object] = stevedore_driver.DriverManager(
            namespace=kind.group, name=name, invoke_on_load=True, on_load_failure_callback=_reraise
        )
    except NoMatches as exc:
        raise _not_found(kind, name) from exc
    except DrivebayError:
        raise
    except Exception as exc:
        # A plugin that fails to import or to instantiate is broken, not absent: say which and where.
        dist = next((d.distribution for d in installed_drivers(kind) if d.name == name), "its distribution")
        raise DriverContractError(
            f"{kind.name} driver '{name}' failed to load: {type(exc).__name__}: {exc}; reinstall {dist} or fix it"
        ) from exc
    return manager_ext.driver


def check_contract(kind: DriverKind, name: str, plugin: object) -> None:
    """Raise ``DriverContractError`` for a missing required hook or a wrong parameter list."""
    for hook_name in kind.required_hooks:
        impl = getattr(plugin, hook_name, None)
        if impl is None or not hasattr(impl, f"{PROJECT}_impl"):
            raise DriverContractError(
                f"{kind.name} driver '{name}' lacks the required hook '{hook_name}'; "
                f"implement it with @drivebay.hookimpl as documented in docs/{kind.name}-hooks.md"
            )
    for attr in dir(plugin):
        if not attr.startswith(kind.prefix):
            continue
        impl = getattr(plugin, attr)
        spec_fn = getattr(kind.spec, attr, None)
        if not hasattr(impl, f"{PROJECT}_impl"):
            continue
        if spec_fn is None:
            raise DriverContractError(
                f"{kind.name} driver '{name}' implements '{attr}', which is not a drivebay hook; "
                f"rename it to one of the hooks in docs/{kind.name}-hooks.md"
            )
        want = list(inspect.signature(spec_fn).parameters)
        have = list(inspect.signature(impl).parameters)
        if want != have:
            raise DriverContractError(
                f"{kind.name} driver '{name}': hook '{attr}' takes ({', '.join(have)}) "
                f"but the spec is ({', '.join(want)}); change the parameters to match"
            )


def _load_wrappers() -> list[object]:
    found: ExtensionManager[object] = ExtensionManager(WRAPPER_GROUP, on_load_failure_callback=_reraise)
    return [ext.plugin() if inspect.isclass(ext.plugin) else ext.plugin for ext in found]


def _reraise(manager: object, entrypoint: object, exc: BaseException) -> None:
    raise exc
