"""Train one model on one (dataset, task, fold) and evaluate it once on the test split.

Procedure: regression targets are standardized with the training split's mean and standard
deviation only; the loss is L1 (or MSE) on standardized targets, or cross-entropy for
classification; AdamW with a one-cycle learning-rate schedule stepped after every batch;
early stopping on the validation metric (MAE, or accuracy for classification) with the
best-validation weights kept; the test split is evaluated exactly once, at the end.

Outputs in the job folder: ``metrics.json``, ``predictions.parquet`` (id, true, predicted
[, probability]), ``history.csv`` (per epoch), ``model.pt`` (weights only, loadable with
``torch.load(..., weights_only=True)``) and ``run.json`` (everything the MLflow import needs).
``metrics.json`` is written last: its presence marks a finished job.
"""

from __future__ import annotations

import copy
import csv
import io
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from tqdm.auto import tqdm

from prdnet.data.loader import make_loader, select_data
from prdnet.data.shards import read_shards
from prdnet.data.splits import SPLIT_NAMES, read_split
from prdnet.io import atomic_path, read_parquet_metadata, write_json, write_parquet, write_text
from prdnet.metrics import primary_metric, task_metrics
from prdnet.models.registry import build_model, count_parameters, resolve_spec


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings (config block ``training``)."""

    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    loss: str = "l1"
    patience: int = 20
    seed: int = 0
    device: str = "auto"
    max_grad_norm: float | None = 10.0


@dataclass
class TrainingJob:
    """What one training job needs: data, task, model spec, settings and its output folder."""

    shard_paths: list[Path]
    split_dir: Path
    task: str
    task_kind: str
    unit: str
    model_spec: dict[str, Any]
    training: TrainingConfig
    out_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    """dataset, task, fold, model, diffraction, ablation: written as MLflow tags."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def choose_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Standardizer:
    """y_std = (y − μ) / σ with μ, σ from the training targets only (identity for classification)."""

    def __init__(self, train_targets: torch.Tensor, enabled: bool) -> None:
        self.enabled = enabled
        self.mean = float(train_targets.float().mean()) if enabled else 0.0
        std = float(train_targets.float().std()) if enabled and len(train_targets) > 1 else 1.0
        self.std = std if std > 0 else 1.0

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std if self.enabled else y

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean if self.enabled else y


def loss_function(kind: str, loss: str) -> nn.Module:
    """L1 or MSE for regression, cross-entropy for classification."""
    if kind == "classification":
        return nn.CrossEntropyLoss()
    return {"l1": nn.L1Loss(), "mse": nn.MSELoss()}[loss]


def predict(model: nn.Module, loader, device: torch.device, kind: str, scaler: Standardizer) -> dict[str, np.ndarray]:
    """Predictions of a whole split in loader order: ids, true, predicted (and probability)."""
    model.eval()
    ids, truths, outputs = [], [], []
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            outputs.append(model(batch).float().cpu())
            truths.append(batch.y.cpu())
            ids.extend(batch.material_id)
    output = torch.cat(outputs)
    result = {"id": np.array(ids, dtype=object), "true": torch.cat(truths).numpy()}
    if kind == "classification":
        probability = torch.softmax(output, dim=-1)
        result["predicted"] = probability.argmax(dim=-1).numpy()
        result["probability"] = probability[:, 1].numpy()
    else:
        result["predicted"] = scaler.inverse(output).numpy()
    return result


def evaluate(predictions: dict[str, np.ndarray], kind: str) -> dict[str, float]:
    """Metrics of a prediction dict from :func:`predict`."""
    return task_metrics(kind, predictions["true"], predictions["predicted"], predictions.get("probability"))


def train_epoch(model, loader, optimizer, scheduler, criterion, scaler, device, kind, max_grad_norm, progress):
    """One pass over the training split; returns the mean training loss and the running training
    metric (MAE in the target's unit, or accuracy), accumulated batch by batch as weights change."""
    model.train()
    total_loss, total_metric, count = 0.0, 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        output = model(batch)
        target = batch.y if kind == "classification" else scaler.forward(batch.y.to(output.dtype))
        loss = criterion(output, target)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {float(loss.detach())} on the batch of crystals {list(batch.material_id)}: the job "
                "stops without outputs. Check these targets (absurd values are rejected by "
                "validation.target_bounds) or lower training.learning_rate."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            if kind == "classification":
                batch_metric = (output.argmax(dim=-1) == batch.y).float().sum()
            else:
                batch_metric = (scaler.inverse(output) - batch.y).abs().sum()
        total_loss += float(loss.detach()) * batch.num_graphs
        total_metric += float(batch_metric)
        count += batch.num_graphs
        progress.update(1)
    return total_loss / max(count, 1), total_metric / max(count, 1)


def history_csv(rows: list[dict[str, float]]) -> str:
    """CSV text of the per-epoch history."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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


def run_training(job: TrainingJob) -> dict[str, Any]:
    """Train, select on validation, test once, and write the job's outputs. Returns the metrics."""
    start = time.perf_counter()
    config = job.training
    seed_everything(config.seed)
    device = choose_device(config.device)
    classification = job.task_kind == "classification"
    splits = {name: read_split(job.split_dir / f"{name}.txt") for name in SPLIT_NAMES}
    crystals, graphs = read_shards(job.shard_paths)  # once, for all three splits
    data = {
        name: select_data(crystals, graphs, job.task, ids, classification=classification)
        for name, ids in splits.items()
    }
    loaders = {
        "train": make_loader(data["train"], config.batch_size, shuffle=True, seed=config.seed),
        "val": make_loader(data["val"], config.batch_size, shuffle=False),
        "test": make_loader(data["test"], config.batch_size, shuffle=False),
    }
    train_targets = torch.cat([d.y for d in data["train"]])
    scaler = Standardizer(train_targets, enabled=not classification)
    num_classes = int(train_targets.max()) + 1 if classification else 1
    model = build_model(job.model_spec, job.task_kind, num_classes=max(num_classes, 2)).to(device)
    n_parameters = count_parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = config.epochs * max(len(loaders["train"]), 1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=steps)
    criterion = loss_function(job.task_kind, config.loss)
    metric, direction = primary_metric(job.task_kind)
    better = (lambda a, b: a < b) if direction == "min" else (lambda a, b: a > b)

    history, best_value, best_epoch, best_state = [], None, 0, None
    progress = tqdm(total=steps, desc=f"{job.labels.get('model', '')} {job.task}", disable=not sys.stderr.isatty())
    for epoch in range(1, config.epochs + 1):
        learning_rate = optimizer.param_groups[0]["lr"]
        train_loss, train_metric = train_epoch(model, loaders["train"], optimizer, scheduler, criterion, scaler,
                                               device, job.task_kind, config.max_grad_norm, progress)  # fmt: skip
        val_predictions = predict(model, loaders["val"], device, job.task_kind, scaler)
        val_metrics = evaluate(val_predictions, job.task_kind)
        history.append({
            "epoch": epoch, "train_loss": train_loss, f"train_{metric}": train_metric,
            f"val_{metric}": val_metrics[metric], "learning_rate": learning_rate,
        })  # fmt: skip
        if best_value is None or better(val_metrics[metric], best_value):
            best_value, best_epoch, best_state = val_metrics[metric], epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    progress.close()

    model.load_state_dict(best_state)
    test_predictions = predict(model, loaders["test"], device, job.task_kind, scaler)
    test_metrics = evaluate(test_predictions, job.task_kind)
    metrics = {
        **{f"test_{name}": value for name, value in test_metrics.items()},
        f"best_val_{metric}": best_value,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "wall_time_s": time.perf_counter() - start,
        "n_parameters": n_parameters,
        "n_train": len(data["train"]), "n_val": len(data["val"]), "n_test": len(data["test"]),
        "metric": metric, "unit": job.unit, "device": str(device),
    }  # fmt: skip
    write_outputs(job, model, scaler, history, test_predictions, metrics)
    return metrics


def write_outputs(job, model, scaler, history, test_predictions, metrics) -> None:
    """Write every output atomically; ``metrics.json`` last, as the job's completion mark."""
    out = job.out_dir
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "target_mean": scaler.mean,
        "target_std": scaler.std,
    }
    with atomic_path(out / "model.pt") as temporary:
        torch.save(checkpoint, temporary)
    write_parquet(out / "predictions.parquet", predictions_table(test_predictions))
    write_text(out / "history.csv", history_csv(history))
    featurizer = read_parquet_metadata(job.shard_paths[0]).get("prdnet.featurizer", {})
    params = {
        **flatten("model", resolve_spec(job.model_spec)),
        **flatten("training", asdict(job.training)),
        **flatten("featurizer", featurizer),
        **job.labels,
        "seed": job.training.seed,
    }
    # what `prdnet predict` needs to rebuild this model: its spec, the task kind and the output width
    outputs = [layer for layer in model.head.modules() if isinstance(layer, nn.Linear)][-1].out_features
    build = {"model_spec": job.model_spec, "task": job.task, "task_kind": job.task_kind, "unit": job.unit,
             "num_classes": outputs if job.task_kind == "classification" else 2}  # fmt: skip
    write_json(out / "run.json", {"params": params, "tags": job.labels, "build": build})
    write_json(out / "metrics.json", metrics)
