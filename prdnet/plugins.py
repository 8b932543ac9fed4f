"""Extensions from other packages through Python entry points, without editing this one.

A package adds a data source or a model by declaring, in its own ``pyproject.toml``::

    [project.entry-points."prdnet.sources"]
    my_source = "my_package.sources:my_source"    # a factory: options dict -> prdnet.data.sources.SourceData

    [project.entry-points."prdnet.models"]
    my_model = "my_package.models:MyBackbone"     # an nn.Module class, with a ``presets`` dict

Once installed (``pip install my-package``), ``my_source`` is a valid ``datasets.<name>.source``
and ``my_model`` a valid ``models.<name>.name``: the schema's lists come from the registries,
which read these groups. Built-in names cannot be replaced.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Any

SOURCE_GROUP = "prdnet.sources"
MODEL_GROUP = "prdnet.models"


class PluginError(RuntimeError):
    """An entry point that cannot be loaded."""


_NAMES: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def entry_point_names(group: str) -> list[str]:
    """Names declared in ``group`` by installed packages (nothing is imported). Scanning the
    installed distributions is slow, and a workflow asks once per job: the names are kept per
    group and ``sys.path`` (where the distributions are found)."""
    key = (group, tuple(sys.path))
    if key not in _NAMES:
        _NAMES[key] = sorted({point.name for point in entry_points(group=group)})
    return list(_NAMES[key])


def load_entry_point(group: str, name: str) -> Any:
    """The object behind entry point ``name`` of ``group``; a clear error naming the package if it fails to load."""
    points = [point for point in entry_points(group=group) if point.name == name]
    if not points:
        raise KeyError(f"no entry point {name!r} in group {group!r}")
    point = points[0]
    try:
        return point.load()
    except Exception as error:  # any import error of a third-party package
        package = point.dist.name if point.dist is not None else "?"
        raise PluginError(f"entry point {name!r} ({point.value}) of package {package} in group {group!r} "
                          f"cannot be loaded: {type(error).__name__}: {error}") from error  # fmt: skip
