"""A finished job's files: ``model.pt``, ``predictions.parquet``, ``history.csv``, ``run.json``
and ``metrics.json`` (written last, the job's completion mark), each written atomically."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from prdnet.data.splits import SPLIT_NAMES
from prdnet.data.tables import CrystalColumns
from prdnet.guards import DUMMY_MODEL
from prdnet.io import read_parquet_metadata, write_json, write_parquet, write_text, write_torch
from prdnet.models.registry import atom_features_identity, resolve_spec
from prdnet.protocols import protocol_name
from prdnet.training.job import TrainingJob
from prdnet.training.recipe import protocol_deviations


def history_csv(rows: list[dict[str, float]]) -> str:
    """CSV text of the per-epoch history."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def data_digest(structures: CrystalColumns, task: str, parts: dict[str, list[str]]) -> str:
    """SHA-256 (hex) of the data a job learns from and is tested on: for its train, validation and
    test parts in turn, the part's ids in sorted order and, for each, its ``task`` target and its
    structure (atomic numbers, fractional coordinates, lattice) as ``structures`` holds them.
    Another dataset, task, fold or split gives another digest; the same data the same digest,
    whatever the model or the order of the ids."""
    position = {material_id: row for row, material_id in enumerate(structures.ids)}
    digest = hashlib.sha256()
    for name in SPLIT_NAMES:
        ids = sorted(parts[name])
        part = structures.take(np.array([position[i] for i in ids], dtype=np.int64))
        digest.update(f"{name} {len(ids)}\n".encode() + "\n".join(ids).encode() + b"\n")
        digest.update(part.targets[task].astype(np.float64).tobytes())
        digest.update(part.atom_counts.astype(np.int64).tobytes() + part.atomic_numbers.astype(np.int64).tobytes())
        digest.update(part.frac_coords.astype(np.float64).tobytes() + part.lattices.astype(np.float64).tobytes())
    return digest.hexdigest()


def job_structures(job: TrainingJob, shard_crystals: CrystalColumns) -> CrystalColumns:
    """The structures a job's data digest covers: the prepared dataset's (``job.structures``, the
    same cell for every model) or, without it, those of the graph shards it read."""
    if job.structures is None:
        return shard_crystals
    import pyarrow.parquet as pq

    from prdnet.data.tables import read_crystals

    return read_crystals(pq.read_table(job.structures))


def predictions_table(predictions: dict[str, np.ndarray]) -> pa.Table:
    """Arrow table of test predictions: id, true, predicted (and probability)."""
    columns = {"id": pa.array(predictions["id"].tolist(), pa.string())}
    for name in ("true", "predicted", "probability"):
        if name in predictions:
            columns[name] = pa.array(np.asarray(predictions[name], dtype=np.float64))
    return pa.table(columns)


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts as dotted keys ({'a': {'b': 1}} → {'a.b': 1})."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return flat
    return {prefix: value}


def model_params(job: TrainingJob) -> dict[str, Any]:
    """The run's model parameters as dotted keys: the resolved spec and the atom table's digest."""
    if job.model_spec["name"] == DUMMY_MODEL:
        return {"model.name": DUMMY_MODEL}
    resolved = resolve_spec(job.model_spec)
    resolved.pop("training")  # the recipe that ran is job.training
    return {**flatten("model", resolved),
            "model.atom_features_digest": atom_features_identity(job.model_spec, job.atom_features)}  # fmt: skip


def protocol_params(job: TrainingJob) -> dict[str, str]:
    """The protocol the job ran under and what its recipe changed of it (JSON {key: [ours,
    protocol's]}; ``{}`` when it ran the protocol as the source fixes it)."""
    deviations = {} if job.model_spec["name"] == DUMMY_MODEL else protocol_deviations(job.model_spec, job.training)
    return {"protocol.name": protocol_name(job.model_spec), "protocol.deviations": json.dumps(deviations, sort_keys=True)}


def write_history(out_dir: Path, rows: list[dict[str, float]]) -> None:
    """Write ``history.csv`` (one row per finished epoch) atomically: a reader never sees half a file."""
    write_text(Path(out_dir) / "history.csv", history_csv(rows))


def split_leakage(split_dir: str | Path) -> dict[str, Any]:
    """``{"leakage": {"action": ..., "val": counts, "test": counts}}`` of this job's task and fold
    (``splits/leakage.json`` two folders above its split lists, :mod:`prdnet.data.leakage`);
    empty when the split step wrote none (splits made before the audit)."""
    split_dir = Path(split_dir)
    path = split_dir.parent.parent / "leakage.json"
    if not path.exists():
        return {}
    audit = json.loads(path.read_text(encoding="utf-8"))
    counts = audit.get("splits", {}).get(split_dir.parent.name, {}).get(split_dir.name)
    return {"leakage": {"action": audit.get("action"), **counts}} if counts else {}


def write_outputs(job, checkpoint, history, test_predictions, metrics, num_classes: int = 2,
                  digest: str | None = None) -> None:  # fmt: skip
    """Write every output atomically; ``metrics.json`` last, as the job's completion mark.
    ``num_classes`` is the model's output width for classification (run.json's ``build`` block);
    ``digest`` the job's :func:`data_digest` (run.json's ``inputs.data_digest``, the MLflow
    dataset's digest)."""
    out = job.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_torch(out / "model.pt", checkpoint)
    write_parquet(out / "predictions.parquet", predictions_table(test_predictions))
    write_history(out, history)
    featurizer = read_parquet_metadata(job.shard_paths[0]).get("prdnet.featurizer", {})
    params = {
        **model_params(job),
        **flatten("training", {**asdict(job.training), "milestones": list(job.training.milestones)}),
        **flatten("featurizer", featurizer),
        **protocol_params(job),
        **job.labels,
        "seed": job.training.seed,
    }
    tags = {**job.labels, "sanity_flags": ",".join(metrics["flags"]) or "none"}
    end_ms = int(time.time() * 1000)  # the job's real start and end, for MLflow's run duration
    times = {"start_time_ms": end_ms - int(metrics["wall_time_s"] * 1000), "end_time_ms": end_ms}
    inputs = {"shard_set": job.shard_paths[0].parent.name, "split_dir": Path(job.split_dir).as_posix(),
              **({"data_digest": digest} if digest else {}), **split_leakage(job.split_dir)}  # fmt: skip
    # what `prdnet predict` needs to rebuild this model: its spec, the task kind and the output width
    build = {"model_spec": job.model_spec, "task": job.task, "task_kind": job.task_kind, "unit": job.unit,
             "num_classes": num_classes,
             "atom_features": None if job.atom_features is None else Path(job.atom_features).as_posix()}  # fmt: skip
    write_json(out / "run.json", {"params": params, "tags": tags, **times, "inputs": inputs, "build": build})
    write_json(out / "metrics.json", metrics)
