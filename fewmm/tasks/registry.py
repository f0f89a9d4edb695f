"""The task registry: :func:`register`, :func:`list_tasks`, :func:`task_folds`, :func:`task_help`
and :func:`build`. Re-exported by :mod:`fewmm.tasks`."""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Sequence

from ..corrupt import Corruption, parse_corruption
from ..registry import Registry
from .task import Task, TaskError

TASKS: Registry["Task"] = Registry("task")


def register(name: str, folds: Sequence[str], help: str = "") -> Callable:
    """Register a task factory ``factory(root, cache, device, corruption, fold, **kw) -> Task``
    under ``name``; ``folds`` are its valid ``fold=`` values, the first being the default."""

    def deco(factory: Callable) -> Callable:
        factory.folds = tuple(folds)
        return TASKS.register(name, help)(factory)

    return deco


def _import_builtin() -> None:
    from . import digits_av, esc50_text, manifest  # noqa: F401  (register themselves)


def list_tasks() -> list[str]:
    """Registered task names, sorted."""
    _import_builtin()
    return TASKS.names()


def task_folds(name: str) -> tuple[str, ...]:
    """The valid ``fold=`` values of task ``name``; the first is the default. Report every fold.

    Raises
    ------
    fewmm.errors.UnknownNameError
        Unknown task.
    """
    _import_builtin()
    return TASKS.get(name).folds


def task_help(name: str) -> str:
    """One-line description of a task."""
    _import_builtin()
    TASKS.get(name)
    return TASKS.help(name)


def build(name: str, root: str | os.PathLike | None = None, cache=None, device: str = "cpu",
          corruption: Corruption | dict | str | None = None, **kw: Any) -> Task:
    """Build a task: load its data, embed every modality (through the feature cache), split it.

    Parameters
    ----------
    name : str
        A name from :func:`list_tasks`.
    root : path or None
        Data root (default ``$FEWMM_DATA``, else ``~/.cache/fewmm/data``).
    cache : FeatureCache, path, True/None (default cache folder) or False (no cache)
        Passed to :func:`fewmm.cache.embed_table`.
    device : str, default "cpu"
        Device of the encoders built from names.
    corruption : Corruption, dict, str or None
        Also compute :attr:`Task.corrupted` (see :func:`fewmm.corrupt.parse_corruption`, e.g.
        ``"noise:10"`` = audio white noise at 10 dB SNR, seed 0).
    **kw
        Task options, e.g. ``fold="B"``, ``pair_seed=1``, ``image_encoder=<Encoder or name>``;
        see the task factory's docstring.

    Returns
    -------
    Task

    Raises
    ------
    fewmm.errors.UnknownNameError
        Unknown task name (the message lists the known ones).
    TaskError
        Unknown option or fold, or a corruption of a modality the task does not have.
    fewmm.errors.DataNotFoundError, fewmm.errors.DataError, fewmm.errors.EncoderError
        From loading the data or the encoders.
    """
    _import_builtin()
    factory = TASKS.get(name)
    params = inspect.signature(factory).parameters
    unknown = [k for k in kw if k not in params]
    if unknown:
        opts = [k for k in params if k not in ("root", "cache", "device", "corruption")]
        raise TaskError(f"{name}: unknown option(s) {', '.join(unknown)}; its options: {', '.join(opts)}")
    fold = kw.get("fold", factory.folds[0])
    if fold not in factory.folds:
        raise TaskError(f"{name}: unknown fold {fold!r}; expected one of {', '.join(map(repr, factory.folds))}")
    return factory(root=root, cache=cache, device=device, corruption=parse_corruption(corruption), **kw)
