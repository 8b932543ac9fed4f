"""Apply finished training jobs to new crystals: ``prdnet predict``.

The new structures go the way the job's training data went: read from a folder of structure
files, an extxyz file / ASE database or a table (as the sources of
:mod:`prdnet.data.sources.generic` read them), validated with the dataset's validation rules
(its ``summary.json``), and featurized by :func:`prdnet.data.shards.featurize_dataset` with the
graph parameters the job recorded (``featurizer.*`` in its ``run.json``; every recorded field is
passed on, so new recipe fields keep working). The model is rebuilt from the spec in
``run.json`` (``build``) with the weights the job tested and the target scaling of ``model.pt``.

With several jobs (e.g. the five folds of a MatBench model) the prediction is the ensemble mean
with its spread (population standard deviation over the jobs). Crystals that fail validation
follow the predicted ones in the output, with an empty prediction and the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prdnet.data.graphs import FEATURIZER_VERSION, GraphParams
from prdnet.data.loader import make_loader, select_data
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.shards import featurize_dataset, read_shards
from prdnet.data.sources import Entry
from prdnet.data.sources.files import DataFileError
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.io import write_parquet, write_text
from prdnet.models.registry import build_model

ASE_SUFFIXES = (".extxyz", ".xyz", ".db", ".traj")


class PredictError(ValueError):
    """The jobs or the structures cannot be used for prediction."""


@dataclasses.dataclass
class FinishedJob:
    """What a finished job folder holds for prediction."""

    folder: Path
    run: dict[str, Any]
    checkpoint: dict[str, Any]

    @property
    def build(self) -> dict[str, Any]:
        return self.run["build"]

    def featurizer(self) -> dict[str, Any]:
        """The recorded graph parameters (``featurizer.*`` of run.json), version included."""
        prefix = "featurizer."
        return {key[len(prefix):]: value for key, value in self.run["params"].items() if key.startswith(prefix)}


def load_job(folder: str | Path) -> FinishedJob:
    """A finished job (``metrics.json`` present) with its run.json and weights."""
    folder = Path(folder)
    if not (folder / "metrics.json").is_file():
        seeds = sorted(path.parent.name for path in folder.glob("seed*/metrics.json"))
        hint = (f": a job is one seed's folder, e.g. {folder / seeds[0]} (finished seeds here: {', '.join(seeds)})"
                if seeds else "")
        raise PredictError(f"{folder} is not a finished training job (no metrics.json){hint}")
    run = json.loads((folder / "run.json").read_text())
    if "build" not in run:
        raise PredictError(f"{folder}/run.json has no 'build' block (the job predates prdnet predict): re-run the job")
    checkpoint = torch.load(folder / "model.pt", weights_only=True, map_location="cpu")
    return FinishedJob(folder, run, checkpoint)


def graph_params(recorded: dict[str, Any]) -> GraphParams:
    """``GraphParams`` from a job's recorded ``featurizer.*`` values, field by field, so a field
    added to the recipe later is passed on without code here. A recorded field this code does not
    know, or another featurizer version, is an error (the graphs would differ from training's)."""
    recorded = dict(recorded)
    version = str(recorded.pop("featurizer_version", ""))
    if version != FEATURIZER_VERSION:
        raise PredictError(f"the job's graphs were built by featurizer version {version!r}, this code builds "
                           f"version {FEATURIZER_VERSION!r}: re-run the job with this code")  # fmt: skip
    fields = {field.name for field in dataclasses.fields(GraphParams)}
    unknown = sorted(set(recorded) - fields)
    if unknown:
        raise PredictError(f"the job recorded graph parameters {unknown} that this code's GraphParams lacks")
    return GraphParams(**{key: tuple(v) if isinstance(v, list) else v for key, v in recorded.items()})


def dataset_summary(job_folder: Path) -> dict[str, Any]:
    """The summary.json of the dataset a job trained on: the nearest folder above the job that
    holds ``summary.json`` beside ``runs/``."""
    for folder in job_folder.resolve().parents:
        if (folder / "summary.json").is_file() and (folder / "runs").is_dir():
            return json.loads((folder / "summary.json").read_text())
    raise PredictError(f"no dataset summary.json above {job_folder} (expected <results>/<dataset>/summary.json)")


def read_structures(path: str | Path, options: dict[str, Any] | None = None) -> Iterator[Entry]:
    """Entries without targets from a folder of structure files (id = file name without its
    ending), an extxyz file or ASE database, or a table (``options``: id_column,
    structure_column, structure_format, format, id_key)."""
    from prdnet.data.sources.generic import FoldCollector, structure_files, structure_from_file, table_entries

    path, options = Path(path), dict(options or {})
    if path.is_dir():
        for entry_id, files in structure_files(path).items():
            if len(files) > 1:
                yield Entry(entry_id, None, {}, parse_error=f"ambiguous structure files: {', '.join(p.name for p in files)}")
            else:
                structure, error = structure_from_file(files[0])
                yield Entry(entry_id, structure, {}, parse_error=error)
        return
    if not path.is_file():
        raise DataFileError(f"--structures: {path} not found")
    options.update(path=str(path), targets={})
    if path.suffix.lower() in ASE_SUFFIXES or options.get("format") in ("extxyz", "xyz", "db"):
        from prdnet.data.sources.ase_files import ase_entries

        yield from ase_entries(options, path, FoldCollector({}))
        return
    yield from table_entries(options, FoldCollector({}), options.get("id_column", "id"),
                             options.get("structure_column", "structure"), options.get("structure_format", "auto"))  # fmt: skip


def predict_jobs(jobs: list[FinishedJob], entries: Iterator[Entry], device: str = "cpu", batch_size: int | None = None) -> list[dict[str, Any]]:
    """One row per entry read: the accepted ones in input order with their prediction (ensemble
    mean and spread over ``jobs``), then the rejected ones with the ``reason``."""
    first = jobs[0]
    for job in jobs[1:]:
        if job.build["task"] != first.build["task"] or job.featurizer() != first.featurizer():
            raise PredictError(f"jobs {first.folder} and {job.folder} differ in task or graph parameters: "
                               "an ensemble needs one task and one graph recipe")  # fmt: skip
    rules = ValidationRules(**dataset_summary(first.folder).get("validation", {}))
    accepted, rejects, _ = collect_entries(entries, [], rules)
    rows = {entry.id: {"id": entry.id, "reason": ""} for entry in accepted}
    if accepted:
        outputs, graph_rejects = _predict_accepted(jobs, accepted, device, batch_size)
        for entry_id, reason in graph_rejects.items():
            rows[entry_id]["reason"] = reason
        for entry_id, values in outputs.items():
            rows[entry_id].update(values)
    return [*rows.values(), *({"id": r.id, "reason": r.reason} for r in rejects)]


def _predict_accepted(jobs, accepted, device, batch_size):
    first = jobs[0]
    kind = first.build["task_kind"]
    params = graph_params(first.featurizer())
    with tempfile.TemporaryDirectory(prefix="prdnet-predict-") as folder:
        folder = Path(folder)
        columns = entries_to_columns(accepted, [])
        write_parquet(folder / "structures.parquet", crystals_table(columns))
        manifest = featurize_dataset(folder / "structures.parquet", folder / "graphs", params, n_shards=1)
        crystals, graphs = read_shards([folder / "graphs" / name for name in manifest["shards"]])
        graph_rejects = {}
        if manifest["graph_rejects"]:
            with open(folder / "graphs" / "rejects.csv", encoding="utf-8") as handle:
                graph_rejects = {r["id"]: r["reason"] for r in csv.DictReader(handle)}
    ids = [e.id for e in accepted if e.id in set(crystals.ids)]
    data = select_data(crystals, graphs, None, ids)
    size = batch_size or int(first.run["params"].get("training.batch_size", 64))
    per_job = np.stack([_job_outputs(job, data, kind, size, device) for job in jobs])  # [J, C] or [J, C, K]
    outputs = {}
    for column, entry_id in enumerate(ids):
        values = per_job[:, column]
        if kind == "classification":
            probabilities = values.mean(axis=0)
            row = {"predicted": float(probabilities.argmax()), "probability": float(probabilities[1])}
            if len(jobs) > 1:
                row["probability_std"] = float(values[:, 1].std())
        else:
            row = {"predicted": float(values.mean())}
            if len(jobs) > 1:
                row["predicted_std"] = float(values.std())
        if len(jobs) > 1:
            row["n_models"] = len(jobs)
        outputs[entry_id] = row
    return outputs, graph_rejects


def _job_outputs(job: FinishedJob, data, kind: str, batch_size: int, device: str) -> np.ndarray:
    """One job's outputs for ``data``: values in the target's unit [C], or class probabilities [C, K]."""
    # the element table (atom_input: cgcnn) is a buffer of the checkpoint: the file only sizes it
    table = job.build.get("atom_features")
    model = build_model(job.build["model_spec"], kind, num_classes=int(job.build["num_classes"]),
                        atom_features=table if table and Path(table).exists() else None)  # fmt: skip
    model.load_state_dict(job.checkpoint["state_dict"])
    model.to(device).eval()
    outputs = []
    with torch.no_grad():
        for batch in make_loader(data, batch_size, shuffle=False):
            outputs.append(model(batch.to(device)).float().cpu())
    output = torch.cat(outputs)
    if kind == "classification":
        return torch.softmax(output, dim=-1).numpy()
    return (output * job.checkpoint["target_std"] + job.checkpoint["target_mean"]).numpy()


def predictions_csv(rows: list[dict[str, Any]], unit: str) -> str:
    """CSV text of the prediction rows; the unit is in the header's prediction columns."""
    columns = ["id", "predicted", "predicted_std", "probability", "probability_std", "n_models", "reason"]
    present = [c for c in columns if any(c in row for row in rows)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f"{c} ({unit})" if unit and c in ("predicted", "predicted_std") else c for c in present])
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in present])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def predict_to_csv(job_folders: list[str | Path], structures: str | Path, out: str | Path,
                   options: dict[str, Any] | None = None, device: str = "cpu", batch_size: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Predict ``structures`` with the jobs in ``job_folders`` and write ``out`` (CSV). Returns the rows."""
    jobs = [load_job(folder) for folder in job_folders]
    rows = predict_jobs(jobs, read_structures(structures, options), device, batch_size)
    write_text(out, predictions_csv(rows, jobs[0].build["unit"]))
    return rows
