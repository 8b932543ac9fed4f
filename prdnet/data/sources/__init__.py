"""Sources of crystal structures behind one small interface.

A source is a callable that, given its config block, returns a :class:`SourceData`: the task
definitions it offers and an iterator of :class:`Entry` (id, pymatgen ``Structure``, targets).
Built-in sources register here with :func:`register_source`; other packages add theirs through
the entry point group ``prdnet.sources`` (:mod:`prdnet.plugins`). The rest of the pipeline is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pymatgen.core import Element, Structure

TaskKind = Literal["regression", "classification"]


@dataclass(frozen=True)
class Task:
    """A prediction target offered by a source."""

    name: str
    kind: TaskKind
    unit: str
    description: str = ""
    bounds: tuple[float | None, float | None] = (None, None)
    """Plausible range [low, high] of the target in ``unit`` (None = open); a value outside is rejected
    for this task. The config's ``validation.target_bounds`` replaces it per task."""
    bounds_key: str = ""
    """The config key the bounds come from (a user's ``targets.<task>.bounds``), named in a reject's
    reason; empty for a source's own default range."""
    bounds_from_values: bool = False
    """No bounds were given (a user's target without ``bounds``): ``prepare`` derives a default range
    from the task's values (:func:`prdnet.data.validate.default_bounds`) and sets aside the targets
    outside it, naming ``bounds_key``. ``validation.target_bounds`` for the task turns it off."""


@dataclass
class Entry:
    """One crystal: its id, its structure (or the reason it could not be parsed) and its targets.

    ``structure`` is ``None`` when the raw record could not be turned into a structure; then
    ``parse_error`` says why, and validation sends the entry to the rejects file.
    """

    id: str
    structure: Structure | None
    targets: dict[str, float | None]
    parse_error: str | None = None


@dataclass
class SourceData:
    """What a source provides: its tasks and its entries (a lazy iterable)."""

    tasks: dict[str, Task]
    entries: Iterable[Entry]
    version: str
    folds: dict[str, list[str]] | None = field(default=None)
    """Official test folds (fold name → test ids), for sources that define them."""


SourceFactory = Callable[[dict[str, Any]], SourceData]
TaskLister = Callable[[dict[str, Any]], list[str] | None]
_REGISTRY: dict[str, SourceFactory] = {}
_TASK_LISTS: dict[str, TaskLister] = {}


def register_source(name: str, tasks: TaskLister | None = None) -> Callable[[SourceFactory], SourceFactory]:
    """Decorator registering a source factory under ``name``. ``tasks(options)`` names the tasks
    the source offers for a config block without reading data (for the start-up checks)."""

    def decorate(factory: SourceFactory) -> SourceFactory:
        _REGISTRY[name] = factory
        if tasks is not None:
            _TASK_LISTS[name] = tasks
        return factory

    return decorate


def offered_tasks(name: str, options: dict[str, Any]) -> list[str] | None:
    """The tasks source ``name`` offers with ``options``, known from the config alone; ``None``
    when the source does not say (a plugin without a task list, an unknown MatBench task)."""
    _import_builtin_sources()
    lister = _TASK_LISTS.get(name) or getattr(_REGISTRY.get(name), "offered_tasks", None)
    return lister(options) if lister is not None else None


def available_sources() -> list[str]:
    """Names of all sources: the built-in ones and those of installed packages (entry point group
    ``prdnet.sources``, see :mod:`prdnet.plugins`). The config schema's list of sources is this one."""
    from prdnet.plugins import SOURCE_GROUP, entry_point_names

    _import_builtin_sources()
    return sorted(set(_REGISTRY) | set(entry_point_names(SOURCE_GROUP)))


def load_source(name: str, options: dict[str, Any]) -> SourceData:
    """Open the source called ``name`` with its config ``options``."""
    from prdnet.plugins import SOURCE_GROUP, load_entry_point

    _import_builtin_sources()
    if name in _REGISTRY:
        return _REGISTRY[name](options)
    if name not in available_sources():
        raise KeyError(f"unknown source {name!r}; known sources: {', '.join(available_sources())}")
    return load_entry_point(SOURCE_GROUP, name)(options)


def _import_builtin_sources() -> None:
    from prdnet.data.sources import ase_files, generic, jarvis, matbench, mp_embedded, mp_live  # noqa: F401


def structure_from_arrays(
    lattice: Any, species: Any, frac_coords: Any, cartesian: bool = False
) -> tuple[Structure | None, str | None]:
    """Build a pymatgen ``Structure`` from raw arrays, or return the reason it cannot be built.

    ``frac_coords`` are Cartesian coordinates (Å) instead when ``cartesian`` is true."""
    for symbol in species:
        if isinstance(symbol, str) and not Element.is_valid_symbol(symbol):
            return None, f"unknown element: {symbol}"
    try:
        return Structure(lattice, species, frac_coords, coords_are_cartesian=cartesian), None
    except Exception as error:  # pymatgen raises many types for malformed input
        return None, f"malformed structure: {type(error).__name__}: {error}"
