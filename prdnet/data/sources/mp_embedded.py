"""The embedded Materials Project set used by CGCNN (36,738 crystals, MP ~2018).

Each line of the gzipped JSON-lines file holds ``material_id``, ``lattice`` (rows a, b, c in Å),
``species``, ``frac_coords``, ``formation_energy_per_atom`` (eV/atom) and ``band_gap`` (eV).
The metal / non-metal label is ``band_gap == 0`` (1 = metal).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prdnet.data.sources import Entry, SourceData, Task, register_source, structure_from_arrays
from prdnet.data.sources.files import check_file, json_lines, parse_json_object
from prdnet.io import file_digest

TASKS = {
    "formation_energy": Task("formation_energy", "regression", "eV/atom", "PBE formation energy per atom", (-10.0, 10.0)),
    "band_gap": Task("band_gap", "regression", "eV", "PBE band gap", (0.0, 30.0)),
    "is_metal": Task("is_metal", "classification", "", "metal (band gap == 0) vs non-metal"),
}


def _number_or_none(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def targets_from_record(record: dict[str, Any]) -> dict[str, float | None]:
    """Targets of one record: formation energy (eV/atom), band gap (eV), is_metal (1.0 / 0.0)."""
    gap = _number_or_none(record.get("band_gap"))
    is_metal = None if gap is None or math.isnan(gap) else float(gap == 0.0)
    return {
        "formation_energy": _number_or_none(record.get("formation_energy_per_atom")),
        "band_gap": gap,
        "is_metal": is_metal,
    }


def parse_line(line: str | bytes, line_number: int) -> Entry:
    """Turn one JSON line into an :class:`Entry`; a broken line (not UTF-8, not JSON, not an
    object, no structure) becomes a rejectable entry."""
    record, error = parse_json_object(line)
    if record is None:
        return Entry(f"line-{line_number}", None, {}, parse_error=error)
    return parse_record(record, line_number)


def parse_record(record: dict[str, Any], line_number: int) -> Entry:
    """One decoded record → an :class:`Entry`."""
    material_id = str(record.get("material_id") or f"line-{line_number}")
    missing = [key for key in ("lattice", "species", "frac_coords") if key not in record]
    if missing:
        return Entry(material_id, None, targets_from_record(record), parse_error=f"malformed record: missing {', '.join(missing)}")
    structure, error = structure_from_arrays(record["lattice"], record["species"], record["frac_coords"])
    return Entry(material_id, structure, targets_from_record(record), parse_error=error)


def read_mp_embedded(path: str | Path, limit: int | None = None) -> Iterator[Entry]:
    """Yield the entries of the embedded MP file (gzipped or plain), in file order (at most ``limit`` lines)."""
    for line_number, record, error in json_lines(path, "datasets.<name>.path"):
        if limit is not None and line_number > limit:
            return
        yield Entry(f"line-{line_number}", None, {}, parse_error=error) if record is None else parse_record(record, line_number)


@register_source("mp_2018_cgcnn36k", tasks=lambda options: list(TASKS))
def mp_2018_cgcnn36k(options: dict[str, Any]) -> SourceData:
    """Source factory: ``options['path']`` is the JSON-lines file."""
    path = check_file(options["path"], "datasets.<name>.path")
    return SourceData(
        tasks=dict(TASKS),
        entries=read_mp_embedded(path),
        version=f"sha256:{file_digest(path)[:16]}",
    )
