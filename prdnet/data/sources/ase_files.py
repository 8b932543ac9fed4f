"""Structures read through ASE: extended XYZ files and ASE databases (``source: ase``).

``path`` is an ``.extxyz`` / ``.xyz`` file (any format ``ase.io.read`` knows, by its name, or
``format``) or an ASE database (``.db``, ``.json`` database). Each target's ``column`` is looked up
in the frame's ``info`` (extxyz comment-line keys), then in its calculator results (``energy``,
as MACE's ``--energy_key`` reads it), and for a database row in its key-value pairs;
``per_atom: true`` divides by the number of atoms. The id is the ``id_key`` value of the frame
(``info`` or key-value pairs), else ``<file stem>-<frame index>`` (database: the row id).
A frame that is not periodic in three dimensions is rejected with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prdnet.data.ids import normalise_id
from prdnet.data.sources import Entry, SourceData, register_source
from prdnet.data.sources.files import DataFileError, check_file
from prdnet.data.sources.generic import FoldCollector, configured_tasks, source_data, target_value

DATABASE_SUFFIXES = (".db", ".aselmdb")


def frame_values(atoms: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a target or the id may be read from: ``info``, the calculator's results, ``extra``."""
    values = dict(getattr(atoms.calc, "results", {}) or {}) if atoms.calc is not None else {}
    values.update(atoms.info)
    values.update(extra or {})
    return values


def atoms_to_structure(atoms: Any) -> tuple[Any, str | None]:
    """A pymatgen ``Structure`` from ASE ``Atoms``, or why it cannot be one."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if not all(atoms.pbc) or abs(atoms.cell.volume) < 1e-9:
        return None, f"not a crystal: periodic along {list(map(bool, atoms.pbc))} with cell volume {atoms.cell.volume:.3g} Å³"
    try:
        return AseAtomsAdaptor.get_structure(atoms), None
    except Exception as error:  # pymatgen raises many types for malformed input
        return None, f"malformed structure: {type(error).__name__}: {error}"


def frames(path: Path, fmt: str | None) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """``(default id, atoms, extra values)`` for each frame or database row; a file that stops
    being readable part-way gives one ``(id, None, {"error": reason})`` and ends."""
    if path.suffix.lower() in DATABASE_SUFFIXES or fmt == "db":
        import ase.db

        with ase.db.connect(str(path)) as database:
            for row in database.select():
                yield str(row.id), row.toatoms(), dict(row.key_value_pairs)
        return
    import ase.io

    index = 0
    reader = ase.io.iread(str(path), index=":", format=None if fmt in (None, "auto") else fmt)
    while True:
        try:
            atoms = next(reader)
        except StopIteration:
            return
        except Exception as error:  # ASE raises many types for a malformed frame
            yield f"{path.stem}-{index}", None, {"error": f"malformed file: frame {index} and later unreadable: {type(error).__name__}: {error}"}
            return
        yield f"{path.stem}-{index}", atoms, {}
        index += 1


def ase_entries(options: dict[str, Any], path: Path, folds: FoldCollector) -> Iterator[Entry]:
    id_key = options.get("id_key")
    for default_id, atoms, extra in frames(path, options.get("format")):
        if atoms is None:
            yield Entry(default_id, None, {}, parse_error=extra["error"])
            continue
        values = frame_values(atoms, extra)
        entry_id = str(values[id_key]) if id_key and values.get(id_key) is not None else default_id
        problem = folds.problem(values)
        if problem is not None:
            yield Entry(entry_id, None, {}, parse_error=problem)
            continue
        structure, error = atoms_to_structure(atoms)
        folds.add(values, normalise_id(entry_id))
        targets = {name: target_value(_scalar(values.get(spec["column"])), bool(spec.get("per_atom")), structure)
                   for name, spec in options["targets"].items()}  # fmt: skip
        yield Entry(entry_id, structure, targets, parse_error=error)


def _scalar(value: Any) -> Any:
    """A one-element array (ASE stores some results so) as its number; other arrays are not targets."""
    try:
        import numpy as np

        array = np.asarray(value)
        return array.item() if array.size == 1 and array.dtype.kind in "biuf" else (None if array.ndim else value)
    except (TypeError, ValueError):
        return None


@register_source("ase", tasks=configured_tasks)
def ase_source(options: dict[str, Any]) -> SourceData:
    """An extxyz file or an ASE database (module docstring)."""
    path = check_file(options["path"], "datasets.<name>.path")
    try:
        import ase  # noqa: F401
    except ImportError as error:  # pragma: no cover - ase is a pinned dependency
        raise DataFileError("source 'ase' needs the package ase (pip install ase)") from error
    folds = FoldCollector(options)
    return source_data(options, ase_entries(options, path, folds), folds, [path])
