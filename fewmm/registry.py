"""A tiny string registry, in the style of timm's ``create_model`` / ``list_models``.

A registry may also read a group of Python entry points (the packaging ecosystem's plugin
mechanism, :mod:`importlib.metadata`): an installed distribution that declares, in its
``pyproject.toml``::

    [project.entry-points."fewmm.methods"]
    median-proto = "my_package.methods:MedianProto"

adds ``median-proto`` to :data:`fewmm.methods.METHODS` the first time the registry is asked for a
name or its list. Groups: ``fewmm.methods``, ``fewmm.heads``, ``fewmm.encoders``.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Callable, Generic, TypeVar

from .errors import PluginWarning, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories.

    Parameters
    ----------
    kind : str
        What is registered ("encoder", "method", "data set"), used in error messages.
    entry_point_group : str or None
        Entry-point group whose entries are registered (name -> the loaded object, a factory) the
        first time :meth:`get`, :meth:`names` or ``in`` is used. An entry point that fails to load
        or clashes with a registered name is skipped with a
        :class:`~fewmm.errors.PluginWarning`; asking for its name then raises an error giving
        the reason.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}
        self._entry_points_loaded = entry_point_group is None
        self._failed: dict[str, str] = {}
        #: name -> "distribution version (entry point value)" of what came from entry points
        self.from_entry_points: dict[str, str] = {}

    def load_entry_points(self, reload: bool = False) -> None:
        """Register the entries of :attr:`entry_point_group` (once; again with ``reload=True``,
        e.g. after installing a plugin in a running process)."""
        if self.entry_point_group is None or (self._entry_points_loaded and not reload):
            return
        self._entry_points_loaded = True
        from importlib import metadata

        for ep in metadata.entry_points(group=self.entry_point_group):
            if ep.name in self.from_entry_points:
                continue
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
            where = f"entry point {ep.name} = {ep.value!r} (group {self.entry_point_group}, from {origin})"
            try:
                obj = ep.load()
            except Exception as e:  # ImportError, AttributeError, or anything the plugin raises on import
                if ep.name not in self._factories:
                    self._failed[ep.name] = f"{where} failed to load: {type(e).__name__}: {e}"
                warnings.warn(f"{where} failed to load: {type(e).__name__}: {e}", PluginWarning, stacklevel=3)
                continue
            if not callable(obj):
                self._failed[ep.name] = f"{where} is a {type(obj).__name__}, not a class or factory function"
                warnings.warn(self._failed[ep.name], PluginWarning, stacklevel=3)
                continue
            if ep.name in self._factories:
                if self._factories[ep.name] is not obj:  # the same object: its module registered itself on import
                    warnings.warn(f"{where}: a {self.kind} named {ep.name!r} is already registered; the plugin's is "
                                  "ignored", PluginWarning, stacklevel=3)
                    continue
            else:
                self.register(ep.name)(obj)
            self.from_entry_points[ep.name] = f"{origin} ({ep.value})"

    def register(self, name: str, help: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            self._help[name] = help or (factory.__doc__ or "").strip().split("\n")[0]
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory for ``name``; raise :class:`UnknownNameError` naming the choices
        (and, for a plugin that failed to load, why)."""
        self.load_entry_points()
        try:
            return self._factories[name]
        except KeyError:
            if name in self._failed:
                raise UnknownNameError(f"{self.kind} {name!r} is not available: {self._failed[name]}") from None
            close = difflib.get_close_matches(str(name), self._factories, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            plug = (f" Your own: --plugin <module or file.py> on the command line, or an entry point in the "
                    f"{self.entry_point_group!r} group.") if self.entry_point_group else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._factories))}.{plug}"
            ) from None

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. a plugin, before registering a new version of it in a running
        session). Raises :class:`UnknownNameError` when it is not registered."""
        if name not in self._factories:
            raise UnknownNameError(f"unknown {self.kind} {name!r}: nothing to unregister")
        del self._factories[name]
        self._help.pop(name, None)
        self.from_entry_points.pop(name, None)

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._factories)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._factories
