"""JARVIS figshare snapshots through jarvis-tools: MEGNet's MP-2018.6.1 and JARVIS-DFT 3D 2021.

- ``mp_2018``: ``jarvis.db.figshare.data("megnet")``, the 69,239 Materials Project crystals of
  MEGNet (MP-2018.6.1), the standard MP benchmark of CGCNN, MEGNet, ALIGNN, Matformer and
  successors. Tasks ``formation_energy`` (``e_form``, eV/atom), ``band_gap`` (``gap pbe``, eV),
  ``bulk_modulus`` and ``shear_modulus`` (``bulk modulus``, ``shear modulus``, log10 GPa, the
  5,450 crystals with elastic data; stored as log10 values in the snapshot).
- ``jarvis_dft_3d_2021``: ``data("dft_3d_2021")``, the 2021-08-18 snapshot (55,723 entries)
  that Matformer and successors use (plain ``dft_3d`` is a newer, larger snapshot).

Missing targets are the string ``"na"`` in JARVIS records; they become missing targets (the
entry is rejected for that task only). Structures are jarvis ``atoms`` dicts: ``lattice_mat``
(rows a, b, c in Å), ``coords`` (fractional, or Cartesian Å when ``cartesian`` is true) and
``elements``.

The download (Snakemake rule ``download_jarvis``) stores jarvis-tools' zip in
``resources/jarvis/`` and writes the records the source needs to ``options['cache']`` with the
data version beside it; ``prepare`` reads only the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prdnet.data.sources import Entry, SourceData, Task, register_source, structure_from_arrays


class JarvisDataset:
    """A JARVIS figshare dataset: its figshare key, id column and tasks (task → record key)."""

    def __init__(self, figshare_key: str, id_key: str, tasks: dict[str, tuple[str, Task]], expected: int):
        self.figshare_key = figshare_key
        self.id_key = id_key
        self.tasks = tasks
        self.expected = expected


FORMATION_ENERGY_BOUNDS = (-10.0, 10.0)
"""eV/atom: plausible formation energies (validation.target_bounds replaces these defaults)."""
BAND_GAP_BOUNDS = (0.0, 30.0)
"""eV: plausible band gaps."""


def _task(name: str, unit: str, description: str, bounds: tuple[float | None, float | None] = (None, None)) -> Task:
    return Task(name, "regression", unit, description, bounds)


DATASETS = {
    "mp_2018": JarvisDataset(
        "megnet",
        "id",
        {
            "formation_energy": ("e_form", _task("formation_energy", "eV/atom", "PBE formation energy per atom (MP-2018.6.1)", FORMATION_ENERGY_BOUNDS)),
            "band_gap": ("gap pbe", _task("band_gap", "eV", "PBE band gap (MP-2018.6.1)", BAND_GAP_BOUNDS)),
            "bulk_modulus": ("bulk modulus", _task("bulk_modulus", "log10(GPa)", "log10 VRH bulk modulus (MP-2018.6.1)")),
            "shear_modulus": ("shear modulus", _task("shear_modulus", "log10(GPa)", "log10 VRH shear modulus (MP-2018.6.1)")),
        },
        69239,
    ),
    "jarvis_dft_3d_2021": JarvisDataset(
        "dft_3d_2021",
        "jid",
        {
            "formation_energy": ("formation_energy_peratom", _task("formation_energy", "eV/atom", "OptB88vdW formation energy per atom", FORMATION_ENERGY_BOUNDS)),
            "optb88vdw_bandgap": ("optb88vdw_bandgap", _task("optb88vdw_bandgap", "eV", "OptB88vdW band gap", BAND_GAP_BOUNDS)),
            "total_energy": ("optb88vdw_total_energy", _task("total_energy", "eV/atom", "OptB88vdW total energy per atom")),
            "mbj_bandgap": ("mbj_bandgap", _task("mbj_bandgap", "eV", "TBmBJ band gap", BAND_GAP_BOUNDS)),
            "ehull": ("ehull", _task("ehull", "eV/atom", "energy above the convex hull")),
            "bulk_modulus": ("bulk_modulus_kv", _task("bulk_modulus", "GPa", "Voigt bulk modulus Kv")),
            "shear_modulus": ("shear_modulus_gv", _task("shear_modulus", "GPa", "Voigt shear modulus Gv")),
        },
        55723,
    ),
}


def target_value(value: Any) -> float | None:
    """A JARVIS target: ``"na"`` (or any non-number) is missing."""
    if value is None or isinstance(value, (str, bool)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def structure_from_atoms(atoms: Any) -> tuple[Any, str | None]:
    """A pymatgen ``Structure`` from a jarvis ``atoms`` dict, or the reason it cannot be built."""
    if not isinstance(atoms, dict):
        return None, "malformed record: atoms is not a dict"
    missing = [key for key in ("lattice_mat", "coords", "elements") if key not in atoms]
    if missing:
        return None, f"malformed record: atoms missing {', '.join(missing)}"
    if len(atoms["coords"]) != len(atoms["elements"]):
        return None, f"malformed structure: {len(atoms['coords'])} coordinates for {len(atoms['elements'])} elements"
    return structure_from_arrays(atoms["lattice_mat"], atoms["elements"], atoms["coords"], cartesian=bool(atoms.get("cartesian", False)))


def parse_record(record: dict[str, Any], dataset: JarvisDataset, index: int) -> Entry:
    """One jarvis record → an :class:`Entry` (targets in the tasks' units)."""
    entry_id = str(record.get(dataset.id_key) or f"row-{index}")
    targets = {name: target_value(record.get(key)) for name, (key, _) in dataset.tasks.items()}
    structure, error = structure_from_atoms(record.get("atoms"))
    return Entry(entry_id, structure, targets, parse_error=error)


def load_figshare(figshare_key: str, store_dir: Path) -> list[dict[str, Any]]:
    """``jarvis.db.figshare.data`` (the network boundary; tests replace this function)."""
    from jarvis.db.figshare import data

    store_dir.mkdir(parents=True, exist_ok=True)
    return data(figshare_key, store_dir=str(store_dir))


def version_path(cache: str | Path) -> Path:
    """The data-version file written beside a cache file."""
    return Path(f"{cache}.version.json")


def download(source: str, options: dict[str, Any], loader: Callable[[str, Path], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Fetch the snapshot through jarvis-tools into ``options['cache']``; write its version beside it."""
    dataset = DATASETS[source]
    figshare_key = options.get("figshare_key", dataset.figshare_key)
    cache = Path(options["cache"])
    records = (loader or load_figshare)(figshare_key, cache.parent)
    keys = [dataset.id_key, "atoms", *(key for key, _ in dataset.tasks.values())]
    kept = [{key: record.get(key, "na") for key in keys} for record in records]
    text = json.dumps(kept)
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(cache.name + ".part")
    with gzip.open(temporary, "wt", encoding="utf-8") as handle:
        handle.write(text)
    temporary.replace(cache)
    meta = {"figshare_key": figshare_key, "records": len(kept), "content_sha256": hashlib.sha256(text.encode()).hexdigest()}
    if figshare_key == dataset.figshare_key:
        meta["expected_records"] = dataset.expected  # the published size; a mismatch means another snapshot
    try:
        from jarvis.db.figshare import get_db_info

        from importlib.metadata import version as package_version

        url, file_name = get_db_info()[figshare_key][:2]
        meta.update(url=url, file=file_name, jarvis_tools_version=package_version("jarvis-tools"))
    except (ImportError, KeyError):
        pass
    version_path(cache).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta


def read_records(cache: str | Path, dataset: JarvisDataset) -> Iterator[Entry]:
    """The entries of a cache file, in the snapshot's order (the order the split recipe indexes)."""
    with gzip.open(cache, "rt", encoding="utf-8") as handle:
        records = json.load(handle)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            yield Entry(f"row-{index}", None, {}, parse_error=f"malformed record: {type(record).__name__}, not an object")
            continue
        yield parse_record(record, dataset, index)


def _factory(source: str) -> Callable[[dict[str, Any]], SourceData]:
    dataset = DATASETS[source]

    def factory(options: dict[str, Any]) -> SourceData:
        cache = Path(options["cache"])
        if not cache.exists():
            download(source, options)
        meta = json.loads(version_path(cache).read_text()) if version_path(cache).exists() else {}
        version = (
            f"jarvis figshare {meta.get('figshare_key', dataset.figshare_key)} ({meta.get('file', '?')}), "
            f"{meta.get('records', '?')} records, sha256:{str(meta.get('content_sha256', ''))[:16]}"
        )
        return SourceData(
            tasks={name: task for name, (_, task) in dataset.tasks.items()},
            entries=read_records(cache, dataset),
            version=version,
        )

    factory.__doc__ = f"Source factory of {source}: ``options['cache']`` (downloaded first if absent), ``figshare_key``."
    return factory


mp_2018 = register_source("mp_2018", tasks=lambda options: list(DATASETS["mp_2018"].tasks))(_factory("mp_2018"))
jarvis_dft_3d_2021 = register_source("jarvis_dft_3d_2021", tasks=lambda options: list(DATASETS["jarvis_dft_3d_2021"].tasks))(
    _factory("jarvis_dft_3d_2021")
)
