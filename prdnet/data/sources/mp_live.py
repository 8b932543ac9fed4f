"""The live Materials Project through ``mp-api`` (summary documents).

Tasks: ``formation_energy`` (eV/atom), ``band_gap`` (eV), ``is_metal`` (MP's ``is_metal``
flag, 1 = metal), ``bulk_modulus``, ``shear_modulus`` (Voigt-Reuss-Hill averages, as log10 GPa)
and ``youngs_modulus`` (log10 GPa of E = 9KG / (3K + G) from the VRH K and G). A modulus that
is missing or not positive has no logarithm: that task's target is missing (or NaN) and the
entry is rejected for that task only.

The download (``prdnet download``, Snakemake rule ``download_mp_live``) writes the documents
to a gzipped JSON cache (``options['cache']``) and the database version beside it; ``prepare``
then reads the cache with no network. The API key is read from the ``MP_API_KEY`` environment
variable only, never from the config, and is never written anywhere.

A summary query with no criteria makes mp-api download the whole database from object
storage, so a query always carries criteria (``options['criteria']``, e.g. ``deprecated: false``
and a ``num_sites`` range) or explicit ``material_ids`` (sent in chunks).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from prdnet.data.sources import Entry, SourceData, Task, register_source

KEY_VARIABLE = "MP_API_KEY"
FIELDS = [
    "material_id",
    "structure",
    "formation_energy_per_atom",
    "band_gap",
    "is_metal",
    "bulk_modulus",
    "shear_modulus",
]
TASKS = {
    "formation_energy": Task("formation_energy", "regression", "eV/atom", "formation energy per atom (MP summary)", (-10.0, 10.0)),
    "band_gap": Task("band_gap", "regression", "eV", "band gap (MP summary)", (0.0, 30.0)),
    "is_metal": Task("is_metal", "classification", "", "MP is_metal flag (1 = metal)"),
    "bulk_modulus": Task("bulk_modulus", "regression", "log10(GPa)", "log10 of the VRH bulk modulus K"),
    "shear_modulus": Task("shear_modulus", "regression", "log10(GPa)", "log10 of the VRH shear modulus G"),
    "youngs_modulus": Task("youngs_modulus", "regression", "log10(GPa)", "log10 of E = 9KG/(3K+G), VRH K and G"),
}


class MissingApiKey(RuntimeError):
    """``MP_API_KEY`` is not set."""


def api_key() -> str:
    """The Materials Project API key from ``MP_API_KEY``; a clear error if it is not set."""
    key = os.environ.get(KEY_VARIABLE, "").strip()
    if not key:
        raise MissingApiKey(
            f"the mp_live source needs a Materials Project API key in the environment variable {KEY_VARIABLE} "
            "(https://next-gen.materialsproject.org/api); it is read from the environment only, never from the config"
        )
    return key


def youngs_modulus(bulk: float, shear: float) -> float:
    """Young's modulus E = 9KG / (3K + G) of an isotropic solid, in the unit of K and G."""
    return 9.0 * bulk * shear / (3.0 * bulk + shear)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _vrh(document: dict[str, Any], name: str, legacy: str) -> float | None:
    """The VRH average of a modulus (GPa): ``bulk_modulus['vrh']`` (current schema) or ``k_vrh`` (older)."""
    value = document.get(name)
    if isinstance(value, dict):
        return _number(value.get("vrh"))
    return _number(value) if value is not None else _number(document.get(legacy))


def _log10(value: float | None) -> float | None:
    """log10 of a modulus in GPa; NaN for a non-positive one (no logarithm), None if missing."""
    if value is None:
        return None
    return math.log10(value) if value > 0 else math.nan


def targets_from_document(document: dict[str, Any]) -> dict[str, float | None]:
    """All targets of one summary document, in the tasks' units."""
    bulk, shear = _vrh(document, "bulk_modulus", "k_vrh"), _vrh(document, "shear_modulus", "g_vrh")
    young = youngs_modulus(bulk, shear) if bulk is not None and shear is not None and 3 * bulk + shear != 0 else None
    is_metal = document.get("is_metal")
    return {
        "formation_energy": _number(document.get("formation_energy_per_atom")),
        "band_gap": _number(document.get("band_gap")),
        "is_metal": None if is_metal is None else float(bool(is_metal)),
        "bulk_modulus": _log10(bulk),
        "shear_modulus": _log10(shear),
        "youngs_modulus": _log10(young),
    }


def parse_document(document: dict[str, Any], index: int) -> Entry:
    """One summary document (a dict as the API returns it) → an :class:`Entry`."""
    material_id = str(document.get("material_id") or f"doc-{index}")
    targets = targets_from_document(document)
    raw = document.get("structure")
    if raw is None:
        return Entry(material_id, None, targets, parse_error="malformed record: missing structure")
    try:
        structure = raw if isinstance(raw, Structure) else Structure.from_dict(raw)
    except Exception as error:  # pymatgen raises many types for malformed input
        return Entry(material_id, None, targets, parse_error=f"malformed structure: {type(error).__name__}: {error}")
    return Entry(material_id, structure, targets)


def _as_dict(document: Any) -> dict[str, Any]:
    """A document as a plain JSON-able dict (mp-api returns dicts or pydantic documents)."""
    if hasattr(document, "model_dump"):
        document = document.model_dump()
    document = dict(document)
    structure = document.get("structure")
    if isinstance(structure, Structure):
        document["structure"] = structure.as_dict()
    if document.get("material_id") is not None:
        document["material_id"] = str(document["material_id"])
    return {key: document.get(key) for key in FIELDS}


def open_rester(key: str) -> Any:
    """An ``mp_api.client.MPRester`` (the network boundary; tests replace this function)."""
    from mp_api.client import MPRester

    return MPRester(key, use_document_model=False, mute_progress_bars=True)


def query_plan(options: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyword arguments of each ``summary.search`` call: ``material_ids`` in chunks, or the criteria.

    Never an unfiltered query (that would download the whole database from object storage)."""
    fields = list(FIELDS)
    chunk_size = int(options.get("chunk_size", 1000))
    material_ids = options.get("material_ids")
    if material_ids:
        return [
            {"material_ids": list(material_ids[i : i + chunk_size]), "fields": fields, "chunk_size": chunk_size}
            for i in range(0, len(material_ids), chunk_size)
        ]
    criteria = {key: tuple(value) if isinstance(value, list) else value for key, value in (options.get("criteria") or {}).items()}
    if not criteria:
        raise ValueError(
            "mp_live: give 'criteria' (e.g. {deprecated: false, num_sites: [1, 500]}) or 'material_ids'; "
            "an unfiltered query downloads the whole Materials Project database"
        )
    plan = {**criteria, "fields": fields, "chunk_size": chunk_size}
    if options.get("num_chunks") is not None:
        plan["num_chunks"] = int(options["num_chunks"])
    return [plan]


def fetch_documents(options: dict[str, Any], rester_factory: Callable[[str], Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Query the summary endpoint; return the documents (dicts) and the data version."""
    key = api_key()
    plan = query_plan(options)
    factory = rester_factory or open_rester
    documents: list[dict[str, Any]] = []
    with factory(key) as rester:
        version = getattr(rester, "db_version", None)
        if version is None and hasattr(rester, "get_database_version"):
            version = rester.get_database_version()
        for call in plan:
            documents.extend(_as_dict(d) for d in rester.materials.summary.search(**call))
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        mp_api_version = package_version("mp-api")
    except PackageNotFoundError:
        mp_api_version = "not installed"
    plan_record = [{k: (len(v) if k == "material_ids" else v) for k, v in call.items()} for call in plan]
    meta = {
        "database_version": version,
        "mp_api_version": mp_api_version,
        "query": plan_record,
        "documents": len(documents),
    }
    return documents, meta


def version_path(cache: str | Path) -> Path:
    """The data-version file written beside a cache file."""
    return Path(f"{cache}.version.json")


def download(options: dict[str, Any], rester_factory: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Fetch the documents into ``options['cache']`` (gzipped JSON list) and the version beside it."""
    cache = Path(options["cache"])
    documents, meta = fetch_documents(options, rester_factory)
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(cache.name + ".part")
    with gzip.open(temporary, "wt", encoding="utf-8") as handle:
        json.dump(documents, handle)
    temporary.replace(cache)
    version_path(cache).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta


def read_documents(cache: str | Path) -> Iterator[Entry]:
    """The entries of a cache file, in the order the API returned them."""
    with gzip.open(cache, "rt", encoding="utf-8") as handle:
        documents = json.load(handle)
    for index, document in enumerate(documents):
        yield parse_document(document, index)


@register_source("mp_live", tasks=lambda options: list(TASKS))
def mp_live(options: dict[str, Any]) -> SourceData:
    """Source factory: ``options['cache']`` (downloaded first if absent; needs ``MP_API_KEY``),
    ``criteria`` or ``material_ids``, ``chunk_size``, ``num_chunks``."""
    cache = Path(options["cache"])
    if not cache.exists():
        download(options)
    meta = json.loads(version_path(cache).read_text()) if version_path(cache).exists() else {}
    return SourceData(
        tasks=dict(TASKS),
        entries=read_documents(cache),
        version=f"Materials Project {meta.get('database_version', 'unknown version')} via mp-api {meta.get('mp_api_version', '?')}",
    )
