"""The Dummy baseline as a training job (:mod:`prdnet.guards`): the mean (or majority class) of
every non-test crystal of the fold, with the same splits, outputs and metrics as a model's job."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from prdnet.data.loader import select_data
from prdnet.data.shards import read_shards
from prdnet.data.splits import SPLIT_NAMES, read_split
from prdnet.guards import dummy_prediction
from prdnet.metrics import primary_metric
from prdnet.training.cost import cost_metrics
from prdnet.training.evaluation import evaluate
from prdnet.training.job import TrainingJob
from prdnet.training.outputs import data_digest, job_structures, write_outputs


def dummy_fit(data: dict[str, list], kind: str) -> float:
    """The Dummy's prediction, fitted on every non-test crystal of the fold (train + validation)."""
    targets = torch.cat([d.y for name in ("train", "val") for d in data[name]]).numpy()
    return dummy_prediction(targets, kind)


def dummy_predictions(ids: np.ndarray, true: np.ndarray, value: float, kind: str) -> dict[str, np.ndarray]:
    """A prediction dict (:func:`predict`'s layout) giving ``value`` for every crystal."""
    result = {"id": ids, "true": true, "predicted": np.full(len(true), value)}
    if kind == "classification":
        result["probability"] = np.full(len(true), float(value == 1))
    return result


def run_dummy(job: TrainingJob) -> dict[str, Any]:
    """The Dummy baseline as a job (:mod:`prdnet.guards`): the same splits, outputs and metrics
    as a model's job; its one "epoch" records its training and validation scores."""
    start = time.perf_counter()
    classification = job.task_kind == "classification"
    splits = {name: read_split(job.split_dir / f"{name}.txt") for name in SPLIT_NAMES}
    crystals, graphs = read_shards(job.shard_paths)
    data = {name: select_data(crystals, graphs, job.task, ids, classification=classification)
            for name, ids in splits.items()}  # fmt: skip
    value = dummy_fit(data, job.task_kind)
    metric, _ = primary_metric(job.task_kind)
    predictions, scores = {}, {}
    for name in SPLIT_NAMES:
        true = torch.cat([d.y for d in data[name]]).numpy() if data[name] else np.zeros(0)
        ids = np.array([d.material_id for d in data[name]], dtype=object)
        predictions[name] = dummy_predictions(ids, true, value, job.task_kind)
        scores[name] = evaluate(predictions[name], job.task_kind)[metric]
    history = [{"epoch": 1, "train_loss": float("nan"), f"train_{metric}": scores["train"],
                f"val_{metric}": scores["val"], "learning_rate": 0.0}]  # fmt: skip
    test_metrics = evaluate(predictions["test"], job.task_kind)
    metrics = {
        **{f"test_{name}": v for name, v in test_metrics.items()},
        f"dummy_test_{metric}": test_metrics[metric],
        "flags": [], "flag_details": {},
        f"best_val_{metric}": scores["val"], "best_epoch": 1, "epochs_run": 1,
        "wall_time_s": time.perf_counter() - start, "n_parameters": 0,
        "n_train": len(data["train"]), "n_val": len(data["val"]), "n_test": len(data["test"]),
        "metric": metric, "unit": job.unit, "device": "cpu", "dummy_prediction": value,
    }  # fmt: skip
    # its one "epoch" is the fit: the whole job's time (prdnet.training.cost)
    metrics.update(cost_metrics(torch.device("cpu"), 1, metrics["wall_time_s"], metrics["wall_time_s"], 1, 1, len(data["train"])))
    digest = data_digest(job_structures(job, crystals), job.task, splits)
    write_outputs(job, {"dummy_prediction": value}, history, predictions["test"], metrics, digest=digest)
    return metrics
