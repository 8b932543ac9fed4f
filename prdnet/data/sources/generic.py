"""Your own data, configured only in YAML: a table, a folder of structure files, a MatBench-format JSON.

Sources (config ``datasets.<name>.source``):

- ``table``: a CSV, Parquet, JSON (an array of objects, or pandas' ``split`` layout) or
  JSON-lines file, gzipped or not, with an id column (``id_column``), a structure column
  (``structure_column``) and one column per target. A structure cell is CIF text, POSCAR text,
  a path to a structure file (relative to the table's folder) or a pymatgen ``Structure`` dict
  (or its JSON text); ``structure_format: auto`` (default) tells them apart per cell.
- ``structure_folder``: a folder of structure files (``structures_dir``; ``<id>.cif``,
  ``<id>.vasp``, ``<id>.json``, ... or a file named ``<id>``) and a table of targets (``path``)
  with an id column, as ALIGNN's ``id_prop.csv`` + structure files. A structure file without a
  row in the table is reported as a reject, not dropped.
- ``matbench_json``: a MatBench-format JSON (pandas ``split`` layout, the row index is the id, a
  ``structure`` column of pymatgen dicts), gzipped or not, under any name.

Each target is named in the ``targets`` block: ``task: {column, kind, unit, bounds, per_atom}``
(``kind`` regression or classification; ``bounds`` the plausible [low, high], ``null`` = open: a
regression target without ``bounds`` gets a default range from its values,
:func:`prdnet.data.validate.default_bounds`, and ``[null, null]`` turns that off; ``per_atom: true``
divides the value by the number of sites). A row that cannot be read (no id, a structure that
does not parse, a missing file) becomes an entry with a parse error, i.e. a reject with its
reason. With ``split: {kind: fold_column, column, n_folds}`` the fold column gives each row's
test fold (0 .. n_folds-1); ``split: {kind: id_lists, test: [file, ...]}`` (any source, read by
:mod:`prdnet.data.prepare`) names the test ids of each fold in text files.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from prdnet.data.ids import normalise_id
from prdnet.data.sources import Entry, SourceData, Task, register_source
from prdnet.data.sources.files import DataFileError, check_file, json_lines, parse_json_object, read_bytes, read_text

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".json", ".cssr", ".xsf", ".mcif")
"""File name endings tried for ``<id><suffix>`` in a structure folder (a file named ``<id>`` is tried first)."""
TABLE_FORMATS = ("csv", "parquet", "json", "jsonl")


def configured_tasks(options: dict[str, Any]) -> list[str]:
    """The task names of the ``targets`` block."""
    return list(options.get("targets") or {})


def tasks_from_config(options: dict[str, Any]) -> dict[str, Task]:
    """The ``targets`` block as task definitions (kind, unit, bounds)."""
    tasks = {}
    for name, spec in options["targets"].items():
        bounds = tuple(spec.get("bounds") or (None, None))
        kind = spec.get("kind", "regression")
        tasks[name] = Task(name, kind, spec.get("unit", ""), f"column {spec['column']}", bounds,
                           bounds_key=f"targets.{name}.bounds",
                           bounds_from_values=kind == "regression" and not spec.get("bounds"))  # fmt: skip
    return tasks


def table_format(path: Path, configured: str | None) -> str:
    """The table's format: ``configured`` unless ``auto``/missing, else from the name (``.gz`` ignored)."""
    if configured and configured != "auto":
        return configured
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".gzip")]
    suffix = suffixes[-1].lstrip(".") if suffixes else ""
    aliases = {"csv": "csv", "tsv": "csv", "parquet": "parquet", "pq": "parquet", "json": "json", "jsonl": "jsonl", "ndjson": "jsonl"}
    if suffix not in aliases:
        raise DataFileError(
            f"config key 'datasets.<name>.format': cannot tell the format of {path} from its name; "
            f"set format to one of {', '.join(TABLE_FORMATS)}"
        )
    return aliases[suffix]


def read_rows(path: str | Path, fmt: str | None, key: str = "datasets.<name>.path") -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(row number, row, None)`` for each row of a table file, ``(row number, None, reason)`` for
    an unreadable one (a bad JSON line). Rows are dicts column → value; for pandas' ``split``
    layout the row index is under the key ``"index"``."""
    path = check_file(path, key)
    fmt = table_format(path, fmt)
    if fmt == "jsonl":
        yield from json_lines(path, key)
        return
    if fmt == "json":
        yield from _json_rows(path, key)
        return
    import pandas as pd

    data = read_bytes(path, key)
    try:
        if fmt == "csv":
            sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, sep=sep)
        else:
            frame = pd.read_parquet(io.BytesIO(data))
    except Exception as error:  # pandas/pyarrow raise many types for a malformed file
        raise DataFileError(f"config key '{key}': cannot read {path} as {fmt}: {type(error).__name__}: {error}") from error
    for number, row in enumerate(frame.to_dict(orient="records"), start=1):
        yield number, row, None


def _json_rows(path: Path, key: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    text = read_text(path, key)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFileError(f"config key '{key}': {path} is not JSON ({error.msg} at line {error.lineno})") from error
    if isinstance(payload, dict) and {"columns", "data"} <= set(payload):  # pandas split layout (MatBench, matminer)
        columns, index = list(payload["columns"]), payload.get("index") or list(range(len(payload["data"])))
        for number, (row_id, values) in enumerate(zip(index, payload["data"]), start=1):
            if not isinstance(values, list) or len(values) != len(columns):
                yield number, None, f"malformed record: row {number} has not {len(columns)} values"
            else:
                yield number, {"index": row_id, **dict(zip(columns, values))}, None
    elif isinstance(payload, list):
        for number, row in enumerate(payload, start=1):
            record, error = parse_json_object(json.dumps(row))
            yield number, record, error
    else:
        raise DataFileError(
            f"config key '{key}': {path} holds neither an array of objects nor a table in pandas' split layout "
            "(keys index, columns, data)"
        )


def parse_structure(value: Any, structure_format: str, base_dir: Path) -> tuple[Structure | None, str | None]:
    """A structure from one cell: CIF or POSCAR text, a file path (relative to ``base_dir``), a
    pymatgen dict or its JSON text (``structure_format`` names which, or ``auto``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
        return None, "malformed record: no structure"
    kind = structure_format if structure_format != "auto" else guess_structure_format(value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen's CIF parser warns about every rounding it does
            if kind == "pymatgen":
                return Structure.from_dict(json.loads(value) if isinstance(value, str) else value), None
            if kind in ("cif", "poscar"):
                return Structure.from_str(str(value), fmt=kind), None
            return structure_from_file(base_dir / str(value).strip())
    except Exception as error:  # pymatgen raises many types for malformed input
        return None, f"malformed structure ({kind}): {type(error).__name__}: {error}"


def guess_structure_format(value: Any) -> str:
    """``pymatgen`` for a dict or JSON text, ``cif`` for CIF text, ``poscar`` for other multi-line
    text, else ``path``."""
    if isinstance(value, dict):
        return "pymatgen"
    text = str(value).lstrip()
    if text.startswith("{"):
        return "pymatgen"
    if "_cell_length_a" in text or text.startswith("data_"):
        return "cif"
    return "poscar" if "\n" in text.strip() else "path"


def structure_from_file(path: Path) -> tuple[Structure | None, str | None]:
    """A structure from a file (format from its name, as pymatgen reads it), or the reason it cannot be read."""
    if not path.is_file():
        return None, f"structure file not found: {path}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Structure.from_file(path), None
        except Exception as error:  # pymatgen raises many types for malformed files
            return None, f"malformed structure file {path.name}: {type(error).__name__}: {error}"


def target_value(value: Any, per_atom: bool, structure: Structure | None) -> float | None:
    """A target cell as a float (empty or non-numeric text is missing); divided by the number of
    sites when ``per_atom``. A boolean stays a boolean: validation takes it as a class label and
    rejects it as a regression target (:func:`prdnet.data.validate.target_problem`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if per_atom:
        return number / len(structure) if structure is not None and len(structure) else None
    return number


def row_targets(row: dict[str, Any], options: dict[str, Any], structure: Structure | None) -> dict[str, float | None]:
    """Every configured target of one row."""
    return {name: target_value(row.get(spec["column"]), bool(spec.get("per_atom")), structure) for name, spec in options["targets"].items()}


def check_columns(row: dict[str, Any], options: dict[str, Any], required: dict[str, str | None], path: Path) -> None:
    """The first row must have every configured column: a misspelled column name is a config error,
    not a table of rejects."""
    wanted = {f"targets.{name}.column": spec["column"] for name, spec in options["targets"].items()}
    wanted.update({key: column for key, column in required.items() if column is not None})
    missing = {key: column for key, column in wanted.items() if column not in row}
    if missing:
        listed = ", ".join(f"'datasets.<name>.{key}' = {column!r}" for key, column in missing.items())
        raise DataFileError(f"{path}: no column {listed}; the table has {sorted(row)}")


class FoldCollector:
    """Test folds from a fold column (``split: {kind: fold_column, column, n_folds}``), or none."""

    def __init__(self, options: dict[str, Any]) -> None:
        split = options.get("split") or {}
        self.column = split.get("column") if split.get("kind") == "fold_column" else None
        self.n_folds = int(split.get("n_folds", 0))
        self.folds: dict[str, list[str]] = {f"fold{i}": [] for i in range(self.n_folds)} if self.column else {}
        self.seen: set[str] = set()

    def problem(self, row: dict[str, Any]) -> str | None:
        """Why the row's fold value is unusable, or ``None`` (then the id is recorded when added)."""
        if self.column is None:
            return None
        value = row.get(self.column)
        try:
            fold = int(str(value).strip())
        except ValueError:
            fold = -1
        if not 0 <= fold < self.n_folds or str(value).strip() not in (str(fold), f"{fold}.0"):
            return f"bad fold value: {value!r} in column {self.column} (expected 0 .. {self.n_folds - 1})"
        return None

    def add(self, row: dict[str, Any], entry_id: str) -> None:
        """Record the row's test fold; only the first row of an id counts (``prepare`` keeps that one)."""
        if self.column is not None and entry_id not in self.seen:
            self.seen.add(entry_id)
            self.folds[f"fold{int(float(str(row[self.column]).strip()))}"].append(entry_id)


def table_entries(options: dict[str, Any], folds: FoldCollector, id_source: str | None, structure_column: str,
                  structure_format: str) -> Iterator[Entry]:  # fmt: skip
    """Entries of a table whose rows hold the structures. ``id_source`` is the id column
    (``None``: pandas' ``index``)."""
    path = Path(options["path"])
    id_column = id_source or "index"
    for number, row, error in read_rows(path, options.get("format")):
        if row is None:
            yield Entry(f"row-{number}", None, {}, parse_error=error)
            continue
        if number == 1:
            check_columns(row, options, {"id_column": id_column, "structure_column": structure_column,
                                         "split.column": folds.column}, path)  # fmt: skip
        yield row_entry(row, number, id_column, folds, lambda: parse_structure(row.get(structure_column), structure_format, path.parent), options)


def row_entry(row: dict[str, Any], number: int, id_column: str, folds: FoldCollector, structure_of, options: dict[str, Any]) -> Entry:
    """One table row → an :class:`Entry` (structure from ``structure_of()``); a row without an id,
    a structure or a valid fold value carries its reason."""
    raw_id = row.get(id_column)
    if raw_id is None or (isinstance(raw_id, float) and math.isnan(raw_id)) or not normalise_id(raw_id):
        return Entry(f"row-{number}", None, {}, parse_error=f"malformed record: no id in column {id_column}")
    entry_id = str(raw_id)
    problem = folds.problem(row)
    if problem is not None:
        return Entry(entry_id, None, {}, parse_error=problem)
    structure, error = structure_of()
    folds.add(row, normalise_id(entry_id))
    return Entry(entry_id, structure, row_targets(row, options, structure), parse_error=error)


def content_digest(paths: list[Path]) -> str:
    """SHA-256 over the bytes of ``paths`` (in the given order): the data version."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def source_data(options: dict[str, Any], entries: Iterator[Entry], folds: FoldCollector, files: list[Path]) -> SourceData:
    """SourceData whose folds (from the fold column) are filled as the entries are read."""
    return SourceData(
        tasks=tasks_from_config(options),
        entries=entries,
        version=f"sha256:{content_digest(files)[:16]}",
        folds=folds.folds if folds.column else None,
    )


@register_source("table", tasks=configured_tasks)
def table(options: dict[str, Any]) -> SourceData:
    """A table with an id column, a structure column and target columns (module docstring)."""
    path = check_file(options["path"], "datasets.<name>.path")
    folds = FoldCollector(options)
    entries = table_entries(options, folds, options.get("id_column", "id"), options.get("structure_column", "structure"),
                            options.get("structure_format", "auto"))  # fmt: skip
    return source_data(options, entries, folds, [path])


@register_source("matbench_json", tasks=configured_tasks)
def matbench_json(options: dict[str, Any]) -> SourceData:
    """A MatBench-format JSON (pandas split layout: the index is the id, pymatgen dicts in ``structure``)."""
    path = check_file(options["path"], "datasets.<name>.path")
    folds = FoldCollector(options)
    entries = table_entries({**options, "format": "json"}, folds, options.get("id_column"),
                            options.get("structure_column", "structure"), "pymatgen")  # fmt: skip
    return source_data(options, entries, folds, [path])


NOT_STRUCTURE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".gz", ".txt", ".md", ".yaml", ".yml")
"""Files in a structure folder that are never structures (the targets table, notes)."""


def structure_files(folder: Path) -> dict[str, list[Path]]:
    """Files of a structure folder by the id they name: ``<id>`` or ``<id><known suffix>``
    (hidden files and tables or notes, e.g. the targets table kept beside the structures, are skipped)."""
    by_id: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() in NOT_STRUCTURE_SUFFIXES:
            continue
        stem = path.name[: -len(path.suffix)] if path.suffix.lower() in STRUCTURE_SUFFIXES else path.name
        by_id.setdefault(normalise_id(stem), []).append(path)
    return by_id


def folder_entries(options: dict[str, Any], folds: FoldCollector, folder: Path, files: dict[str, list[Path]]) -> Iterator[Entry]:
    """Entries of a structure folder + targets table; files without a row become rejects last."""
    path = Path(options["path"])
    id_column = options.get("id_column", "id")
    used: set[str] = set()

    def structure_of(entry_id: str):
        def read() -> tuple[Structure | None, str | None]:
            candidates = files.get(normalise_id(entry_id), [])
            if not candidates:
                return None, f"structure file not found: no {entry_id}, {entry_id}.cif, ... in {folder}"
            if len(candidates) > 1:
                return None, f"ambiguous structure files: {', '.join(p.name for p in candidates)}"
            return structure_from_file(candidates[0])

        return read

    for number, row, error in read_rows(path, options.get("format")):
        if row is None:
            yield Entry(f"row-{number}", None, {}, parse_error=error)
            continue
        if number == 1:
            check_columns(row, options, {"id_column": id_column, "split.column": folds.column}, path)
        raw_id = row.get(id_column)
        # ALIGNN's id_prop.csv names the file (e.g. "JVASP-1002.vasp"): the id is then the file's stem
        if isinstance(raw_id, str) and Path(raw_id.strip()).suffix.lower() in STRUCTURE_SUFFIXES:
            row = {**row, id_column: raw_id.strip()[: -len(Path(raw_id.strip()).suffix)]}
            raw_id = row[id_column]
        used.add(normalise_id(raw_id) if raw_id is not None else "")
        yield row_entry(row, number, id_column, folds, structure_of(str(raw_id)), options)
    for entry_id in sorted(set(files) - used):
        yield Entry(entry_id, None, {}, parse_error=f"no row in the targets table {path.name} for {files[entry_id][0].name}")


@register_source("structure_folder", tasks=configured_tasks)
def structure_folder(options: dict[str, Any]) -> SourceData:
    """A folder of structure files and a table of targets keyed by id (module docstring)."""
    path = check_file(options["path"], "datasets.<name>.path")
    folder = Path(options["structures_dir"])
    if not folder.is_dir():
        raise DataFileError(f"config key 'datasets.<name>.structures_dir': {folder} is not a folder")
    files = structure_files(folder)
    folds = FoldCollector(options)
    all_files = [path, *sorted(p for group in files.values() for p in group)]
    return source_data(options, folder_entries(options, folds, folder, files), folds, all_files)
