"""Train one model on one (dataset, task, fold) and evaluate it once on the test split.

Procedure: regression targets are standardized with the training split's mean and standard
deviation only; the loss is L1 or MSE on standardized targets, or cross-entropy for
classification. Optimizer, learning rate, batch size, epochs, schedule, gradient clipping and
early stopping form the job's training recipe (:class:`TrainingConfig`): each model preset in
``config/models.yaml`` carries its official code's recipe with its source, the workflow's
``training`` block overrides it key by key, then the model spec's own ``training`` block
(:func:`resolve_training`). Every schedule is stepped after every batch. Early stopping is off
unless ``patience`` is set (none of the official codes stops early); the weights of the best
validation epoch (MAE, or accuracy for classification) are kept and the test split is evaluated
exactly once, at the end. One line per epoch goes to the job's log.

Outputs in the job folder: ``metrics.json``, ``predictions.parquet`` (id, true, predicted
[, probability]), ``history.csv`` (per epoch), ``model.pt`` (weights only, loadable with
``torch.load(..., weights_only=True)``) and ``run.json`` (everything the MLflow import needs).
``metrics.json`` is written last: its presence marks a finished job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from prdnet import distributed
from prdnet.checkpoint import checkpoint_path, load_checkpoint, restore_rng, rng_state, save_checkpoint
from prdnet.data.loader import make_loader, select_data
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import check_shard_recipe, read_shards
from prdnet.data.splits import SPLIT_NAMES, read_split
from prdnet.guards import DUMMY_MODEL, SanityThresholds, dummy_prediction, require_finite, sanity_flags
from prdnet.io import atomic_path, file_digest, read_parquet_metadata, write_json, write_parquet, write_text
from prdnet.distributed import EpochBatchSampler, Process, launched_process
from prdnet.metrics import primary_metric, task_metrics
from prdnet.models.registry import atom_features_identity, build_model, count_parameters, resolve_spec
from prdnet.preemption import RESUMABLE_EXIT_STATUS, StopRequest, TrainingInterrupted


@dataclass(frozen=True)
class TrainingConfig:
    """A training recipe (schema: ``model.schema.yaml#/$defs/training_recipe``).

    The defaults are the harness's generic recipe, used for what a preset does not set.
    """

    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.0
    """SGD momentum (``optimizer: sgd`` only)."""
    loss: str = "l1"
    optimizer: str = "adamw"
    """``adamw`` (decoupled weight decay), ``adam`` (weight decay as L2 penalty), ``sgd``."""
    schedule: str = "onecycle"
    """``onecycle`` (torch OneCycleLR, peak ``learning_rate``), ``constant``, ``multistep``
    (lr × gamma at each of ``milestones``, in epochs), ``cosine`` (linear warm-up over
    ``warmup_epochs``, then cosine decay to 0)."""
    pct_start: float = 0.3
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    hold_epochs: int = 0
    """linear: epochs at ``learning_rate`` before the linear decay."""
    final_learning_rate: float = 0.0
    """linear: the learning rate reached at the last epoch."""
    select: str = "best_val"
    """Weights tested: ``best_val`` (the best validation epoch's) or ``last`` (the final epoch's)."""
    max_grad_norm: float | None = 10.0
    """Clip the global gradient norm to this; None = no clipping."""
    patience: int | None = None
    """Stop after this many epochs without validation improvement; None = never (the default)."""
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    """``fp32``, or mixed precision: ``bf16`` (autocast) or ``fp16`` (autocast and a gradient scaler)."""
    decay_norm_and_bias: bool = True
    """False: no weight decay on biases and normalization weights (the official ``group_decay``)."""
    source: str = ""
    """Where the recipe comes from (official file and line), recorded with the run."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))
        choices = {"loss": ("l1", "mse"), "optimizer": ("adamw", "adam", "sgd"),
                   "schedule": ("onecycle", "constant", "multistep", "cosine", "linear"), "select": ("best_val", "last"),
                   "precision": ("fp32", "bf16", "fp16")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"training.{name} must be one of {list(allowed)}, not {getattr(self, name)!r}")


def resolve_training(model_spec: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
    """The recipe of a job: the model preset's recipe, then ``overrides`` (the workflow's
    ``training`` block), then the spec's own ``training`` block, each key by key.

    Raises ``ValueError`` naming an unknown key.
    """
    preset = {} if model_spec["name"] == DUMMY_MODEL else resolve_spec(model_spec)["training"]
    recipe = {**preset, **(overrides or {}), **(model_spec.get("training") or {})}
    known = {f.name for f in fields(TrainingConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"unknown training key(s) {unknown}; known: {sorted(known)}")
    return TrainingConfig(**recipe)


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
    atom_features: Path | None = None
    """CGCNN's element table for presets with ``atom_input: cgcnn`` (None: the registry's default)."""
    sanity: SanityThresholds = SanityThresholds()
    """Thresholds of the guards (:mod:`prdnet.guards`)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def choose_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when present, else CPU; on CUDA, process ``local_rank`` of a data-parallel
    run takes device ``cuda:local_rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


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


def parameter_groups(model: nn.Module, config: TrainingConfig) -> list[dict[str, Any]]:
    """The model's parameters for the optimizer: one group with the recipe's weight decay or, with
    ``decay_norm_and_bias: false`` (ALIGNN, Matformer, ComFormer and PRDNet's ``group_decay``),
    biases and normalization weights (every parameter with fewer than 2 dimensions) in a second
    group without weight decay."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.decay_norm_and_bias:
        return [{"params": parameters}]
    return [{"params": [p for p in parameters if p.ndim > 1]},
            {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0}]  # fmt: skip


def make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``'s parameters (:func:`parameter_groups`)."""
    groups = parameter_groups(model, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum,
                               weight_decay=config.weight_decay)  # fmt: skip
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)


def schedule_factor(config: TrainingConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier after ``step`` batches for the ``constant``, ``multistep`` and
    ``cosine`` schedules (``onecycle`` is torch's OneCycleLR).

    multistep: γ^(number of milestones ≤ epoch), epoch = step // steps_per_epoch;
    cosine: (step + 1) / W during the warm-up of W = warmup_epochs · steps_per_epoch steps, then
    ½ (1 + cos(π (step − W) / (T − W))) over the remaining steps up to T = epochs · steps_per_epoch;
    linear (kgcnn v2.1.0's LinearLearningRateScheduler, per epoch, epochs counted from 0): 1 for
    epoch < H = hold_epochs, then 1 − (1 − η_end/η) (epoch − H) / (epochs − H), which would reach
    η_end = final_learning_rate at epoch = epochs (one past the last, as in kgcnn).
    """
    if config.schedule == "linear":
        epoch = step // steps_per_epoch
        progress = max(epoch - config.hold_epochs, 0) / max(config.epochs - config.hold_epochs, 1)
        return 1.0 - (1.0 - config.final_learning_rate / config.learning_rate) * progress
    if config.schedule == "multistep":
        epoch = step // steps_per_epoch
        return config.gamma ** sum(epoch >= milestone for milestone in config.milestones)
    if config.schedule == "cosine":
        warmup, total = config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))
    return 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, steps_per_epoch: int):
    """The recipe's learning-rate schedule, stepped after every batch."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, pct_start=config.pct_start,
                                                   total_steps=config.epochs * steps_per_epoch)  # fmt: skip
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule_factor(config, step, steps_per_epoch))


def loss_function(kind: str, loss: str) -> nn.Module:
    """L1 or MSE for regression, cross-entropy for classification."""
    if kind == "classification":
        return nn.CrossEntropyLoss()
    return {"l1": nn.L1Loss(), "mse": nn.MSELoss()}[loss]


def predict(model: nn.Module, loader, device: torch.device, kind: str, scaler: Standardizer,
            precision: str = "fp32") -> dict[str, np.ndarray]:  # fmt: skip
    """Predictions of a whole split in loader order: ids, true, predicted (and probability)."""
    model.eval()
    ids, truths, outputs = [], [], []
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            with autocast(device, precision):
                output = model(batch)
            outputs.append(output.float().cpu())
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


@dataclass
class EpochProgress:
    """The partial sums of the epoch in progress (saved in a checkpoint taken mid-epoch)."""

    batches: int = 0
    """Global batches done in this epoch."""
    loss_sum: float = 0.0
    metric_sum: float = 0.0
    count: int = 0
    learning_rate: float = 0.0
    """The learning rate at the epoch's first batch (the history's ``learning_rate``)."""


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``training.precision`` → the dtype of autocast's reduced-precision operations."""


def autocast(device: torch.device, precision: str):
    """Autocast to bf16 or fp16 (matrix products and the like; reductions stay float32), or a
    no-op for fp32."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")


def train_epoch(net, loader, optimizer, scheduler, grad_scaler, criterion, scaler, device, kind, config,
                bar, epoch, partial: EpochProgress, should_stop) -> bool:  # fmt: skip
    """Continue the training pass of ``epoch`` from ``partial`` (updated in place, batch by batch:
    the sum of batch losses × crystals, of the running training metric, MAE in the target's unit
    or correct predictions, and the crystals seen by this process).

    After every batch ``should_stop()`` is asked; returns False when it said yes (the epoch is
    unfinished), True at the end of the epoch. Raises :class:`prdnet.guards.NonFiniteError` at the
    first non-finite batch loss."""
    net.train()
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, config.precision):
            output = net(batch)
        output = output.float()
        target = batch.y if kind == "classification" else scaler.forward(batch.y.to(output.dtype))
        loss = criterion(output, target)
        batch_loss = require_finite(float(loss.detach()), f"the training loss (epoch {epoch}, batch "
                                    f"{partial.batches + 1}; crystals {list(batch.material_id)})")  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        grad_scaler.scale(loss).backward()
        if config.max_grad_norm:
            grad_scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
        grad_scaler.step(optimizer)
        grad_scaler.update()
        scheduler.step()
        with torch.no_grad():
            if kind == "classification":
                batch_metric = (output.argmax(dim=-1) == batch.y).float().sum()
            else:
                batch_metric = (scaler.inverse(output) - batch.y).abs().sum()
        partial.loss_sum += batch_loss * batch.num_graphs
        partial.metric_sum += float(batch_metric)
        partial.count += batch.num_graphs
        partial.batches += 1
        bar.update(1)
        if should_stop():
            return False
    return True


def log(message: str) -> None:
    """One progress line on standard output (the job's log), flushed at once."""
    print(message, flush=True)


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


def training_identity(job: TrainingJob, world_size: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (:mod:`prdnet.checkpoint`): the resolved model
    spec and atom table, the training recipe, the data (task, shard files' SHA-256, split ids) and
    the number of data-parallel processes."""
    splits = {name: read_split(job.split_dir / f"{name}.txt") for name in SPLIT_NAMES}
    return {
        "model": model_params(job),
        "training": {**asdict(job.training), "milestones": list(job.training.milestones)},
        "data": {
            "task": job.task, "task_kind": job.task_kind,
            "shards": {path.name: file_digest(path) for path in job.shard_paths},
            "splits": {name: hashlib.sha256("\n".join(ids).encode()).hexdigest() for name, ids in splits.items()},
        },
        "processes": world_size,
    }  # fmt: skip


@dataclass
class TrainingState:
    """Where a training run stands between batches: what a checkpoint restores besides the model,
    optimizer, scheduler, gradient scaler and random-number states."""

    epoch: int = 1
    """The epoch in progress (or the next one)."""
    partial: EpochProgress = field(default_factory=EpochProgress)
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    finished: bool = False
    """All epochs done, or stopped early: only the test remains."""
    elapsed_s: float = 0.0
    """Wall time of earlier attempts."""
    attempt: int = 1
    """1 for the first start, +1 at every resume."""
    stops: list[str] = field(default_factory=list)
    """How earlier attempts were stopped by a signal (a killed attempt leaves no entry)."""


def run_training(job: TrainingJob) -> dict[str, Any]:
    """Train, select on validation, test once, and write the job's outputs. Returns the metrics.

    Launched by ``torchrun`` with several processes, trains data-parallel (:mod:`prdnet.distributed`);
    process 0 writes the files. Resumes from the job's checkpoint when there is one; on SIGTERM or
    SIGUSR1 writes it and raises :class:`prdnet.preemption.TrainingInterrupted` (exit status 75)."""
    process = launched_process()
    device = choose_device(job.training.device, process.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed.start(process, device)
    try:
        with StopRequest() as stop:
            return _run_training(job, process, device, stop)
    finally:
        distributed.stop(process)


def _run_training(job: TrainingJob, process: Process, device: torch.device, stop: StopRequest) -> dict[str, Any]:
    start = time.perf_counter()
    config = job.training
    seed_everything(config.seed)
    classification = job.task_kind == "classification"
    splits = {name: read_split(job.split_dir / f"{name}.txt") for name in SPLIT_NAMES}
    check_shard_recipe(job.shard_paths, graph_recipe_for(job.model_spec))  # the model's own graphs, or refuse
    crystals, graphs = read_shards(job.shard_paths)  # once, for all three splits
    data = {
        name: select_data(crystals, graphs, job.task, ids, classification=classification)
        for name, ids in splits.items()
    }
    sampler = EpochBatchSampler(len(data["train"]), config.batch_size, seed=config.seed, shuffle=True,
                                rank=process.rank, world_size=process.world_size)  # fmt: skip
    loaders = {
        "train": DataLoader(data["train"], batch_sampler=sampler),
        "val": make_loader(data["val"], config.batch_size, shuffle=False),
        "test": make_loader(data["test"], config.batch_size, shuffle=False),
    }
    train_targets = torch.cat([d.y for d in data["train"]])
    scaler = Standardizer(train_targets, enabled=not classification)
    num_classes = int(train_targets.max()) + 1 if classification else 1
    model = build_model(job.model_spec, job.task_kind, num_classes=max(num_classes, 2),
                        atom_features=job.atom_features).to(device)  # fmt: skip
    n_parameters = count_parameters(model)
    net = model
    if process.distributed:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = max(sampler.batches_per_epoch(), 1)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    grad_scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    criterion = loss_function(job.task_kind, config.loss)
    metric, direction = primary_metric(job.task_kind)
    better = (lambda a, b: a < b) if direction == "min" else (lambda a, b: a > b)
    label = f"{job.labels.get('model', '')} {job.task}"

    identity = training_identity(job, process.world_size)
    path = checkpoint_path(job.out_dir)
    state = TrainingState()
    saved = load_checkpoint(path, identity)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        grad_scaler.load_state_dict(saved["grad_scaler"])
        restore_rng(saved["rng"][process.rank])
        state = TrainingState(epoch=saved["epoch"], partial=EpochProgress(**saved["partial"]),
                              history=saved["history"], best_value=saved["best_value"],
                              best_epoch=saved["best_epoch"], best_state=saved["best_state"],
                              finished=saved["finished"], elapsed_s=saved["elapsed_s"],
                              attempt=saved["attempt"] + 1, stops=saved["stops"])  # fmt: skip
        if not process.main:  # the epoch's partial sums are the sum over processes, kept by process 0
            state.partial = EpochProgress(batches=state.partial.batches)

    def save(where: str) -> None:
        """Checkpoint the run (process 0 writes; every process contributes its RNG state)."""
        partial = state.partial
        sums = distributed.sum_over_processes([partial.loss_sum, partial.metric_sum, partial.count], process)
        rng = distributed.gather_objects(rng_state(), process)
        if process.main:
            size, seconds = save_checkpoint(path, identity, {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "grad_scaler": grad_scaler.state_dict(), "rng": rng,
                "epoch": state.epoch, "partial": {**asdict(partial), "loss_sum": sums[0], "metric_sum": sums[1],
                                                  "count": int(sums[2])},
                "history": state.history, "best_value": state.best_value, "best_epoch": state.best_epoch,
                "best_state": state.best_state, "finished": state.finished,
                "elapsed_s": state.elapsed_s + time.perf_counter() - start,
                "attempt": state.attempt, "stops": state.stops,
            })  # fmt: skip
            log(f"checkpoint ({where}): {size / 2**20:.2f} MiB written in {seconds:.2f} s")
        distributed.barrier(process)

    def interrupted() -> bool:
        return distributed.any_process(stop.requested, process)

    def leave(where: str) -> None:
        state.stops.append(f"attempt {state.attempt}: {stop.signal_name or 'another process signalled'} {where}")
        save(where)
        message = f"stopped by {stop.signal_name or 'a signal to another process'} {where}; checkpoint {path}"
        if process.main:
            log(f"{message}: exit {RESUMABLE_EXIT_STATUS}, the next attempt resumes")
        raise TrainingInterrupted(message)

    done_steps = (state.epoch - 1) * steps_per_epoch + state.partial.batches
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=min(done_steps, config.epochs * steps_per_epoch),
               desc=label, disable=not (process.main and sys.stderr.isatty()))  # fmt: skip
    if process.main:
        log(f"{label}: {n_parameters:,} parameters, {len(data['train'])} training crystals, {config.epochs} epochs × "
            f"{steps_per_epoch} batches, {config.optimizer} {config.schedule} lr {config.learning_rate:g}, "
            f"{config.precision}, device {device}"
            + (f" × {process.world_size} processes" if process.distributed else ""))  # fmt: skip
        if saved is not None:
            log(f"resuming from {path}: epoch {state.epoch}, batch {state.partial.batches} of {steps_per_epoch}"
                + (" (training finished, testing)" if state.finished else "")
                + f"; attempt {state.attempt}, earlier stops: {'; '.join(state.stops) or 'none (killed)'}")  # fmt: skip
    while not state.finished and state.epoch <= config.epochs:
        epoch = state.epoch
        epoch_start = time.perf_counter()
        sampler.set_epoch(epoch, state.partial.batches)
        if state.partial.batches == 0:
            state.partial.learning_rate = optimizer.param_groups[0]["lr"]
        learning_rate = state.partial.learning_rate
        completed = train_epoch(net, loaders["train"], optimizer, scheduler, grad_scaler, criterion, scaler, device,
                                job.task_kind, config, bar, epoch, state.partial, interrupted)  # fmt: skip
        if not completed:
            leave(f"in epoch {epoch} after batch {state.partial.batches}")
        loss_sum, metric_sum, count = distributed.sum_over_processes(
            [state.partial.loss_sum, state.partial.metric_sum, state.partial.count], process)
        train_loss, train_metric = loss_sum / max(count, 1), metric_sum / max(count, 1)
        val_predictions = predict(model, loaders["val"], device, job.task_kind, scaler, config.precision)
        val_metrics = evaluate(val_predictions, job.task_kind)
        require_finite(val_metrics[metric], f"the validation {metric} (epoch {epoch})")
        state.history.append({
            "epoch": epoch, "train_loss": train_loss, f"train_{metric}": train_metric,
            f"val_{metric}": val_metrics[metric], "learning_rate": learning_rate,
        })  # fmt: skip
        if state.best_value is None or better(val_metrics[metric], state.best_value):
            state.best_value, state.best_epoch = val_metrics[metric], epoch
            state.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        stop_early = config.patience is not None and epoch - state.best_epoch >= config.patience
        state.epoch, state.partial = epoch + 1, EpochProgress()
        state.finished = stop_early or epoch == config.epochs
        seconds = time.perf_counter() - epoch_start
        if process.main:
            log(f"epoch {epoch}/{config.epochs}  train_loss {train_loss:.5g}  val_{metric} {val_metrics[metric]:.5g}  "
                f"lr {learning_rate:.3g}  {seconds:.1f} s/epoch  "
                f"ETA {seconds * (config.epochs - epoch):.0f} s")  # fmt: skip
            if stop_early:
                log(f"early stop: no validation improvement for {config.patience} epochs "
                    f"(best epoch {state.best_epoch})")  # fmt: skip
        save(f"after epoch {epoch}")
        if interrupted():
            leave(f"after epoch {epoch}")
    bar.close()

    history, best_value, best_epoch = state.history, state.best_value, state.best_epoch
    if config.select == "best_val":
        model.load_state_dict(state.best_state)
    test_predictions = predict(model, loaders["test"], device, job.task_kind, scaler, config.precision)
    test_metrics = evaluate(test_predictions, job.task_kind)
    require_finite(test_metrics[metric], f"the test {metric}")
    dummy_value = dummy_fit(data, job.task_kind)
    dummy_metrics = evaluate(dummy_predictions(test_predictions["id"], test_predictions["true"], dummy_value,
                                               job.task_kind), job.task_kind)  # fmt: skip
    flags = sanity_flags(job.task_kind, test_predictions["true"], test_predictions["predicted"],
                         test_predictions.get("probability"), test_metrics[metric], dummy_metrics[metric],
                         [row["train_loss"] for row in history], [row[f"val_{metric}"] for row in history],
                         job.sanity)  # fmt: skip
    if process.main:
        for flag, reason in flags.items():
            log(f"SANITY FLAG {flag}: {reason}")
    metrics = {
        **{f"test_{name}": value for name, value in test_metrics.items()},
        f"dummy_test_{metric}": dummy_metrics[metric],
        "flags": sorted(flags),
        "flag_details": flags,
        f"best_val_{metric}": best_value,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "wall_time_s": state.elapsed_s + time.perf_counter() - start,
        "n_parameters": n_parameters,
        "n_train": len(data["train"]), "n_val": len(data["val"]), "n_test": len(data["test"]),
        "metric": metric, "unit": job.unit, "device": str(device.type),
    }  # fmt: skip
    checkpoint = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "target_mean": scaler.mean,
        "target_std": scaler.std,
    }
    if process.main:
        write_outputs(job, checkpoint, history, test_predictions, metrics, max(num_classes, 2))
        path.unlink(missing_ok=True)  # the outputs are complete: the checkpoint is no longer needed
    distributed.barrier(process)
    return metrics


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
    write_outputs(job, {"dummy_prediction": value}, history, predictions["test"], metrics)
    return metrics


def run_job(job: TrainingJob) -> dict[str, Any]:
    """Run a training job, or the Dummy's when the spec names ``dummy``."""
    return run_dummy(job) if job.model_spec["name"] == DUMMY_MODEL else run_training(job)


def model_params(job: TrainingJob) -> dict[str, Any]:
    """The run's model parameters as dotted keys: the resolved spec and the atom table's digest."""
    if job.model_spec["name"] == DUMMY_MODEL:
        return {"model.name": DUMMY_MODEL}
    resolved = resolve_spec(job.model_spec)
    resolved.pop("training")  # the recipe that ran is job.training
    return {**flatten("model", resolved),
            "model.atom_features_digest": atom_features_identity(job.model_spec, job.atom_features)}  # fmt: skip


def write_outputs(job, checkpoint, history, test_predictions, metrics, num_classes: int = 2) -> None:
    """Write every output atomically; ``metrics.json`` last, as the job's completion mark.
    ``num_classes`` is the model's output width for classification (run.json's ``build`` block)."""
    out = job.out_dir
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.pt") as temporary:
        torch.save(checkpoint, temporary)
    write_parquet(out / "predictions.parquet", predictions_table(test_predictions))
    write_text(out / "history.csv", history_csv(history))
    featurizer = read_parquet_metadata(job.shard_paths[0]).get("prdnet.featurizer", {})
    params = {
        **model_params(job),
        **flatten("training", {**asdict(job.training), "milestones": list(job.training.milestones)}),
        **flatten("featurizer", featurizer),
        **job.labels,
        "seed": job.training.seed,
    }
    tags = {**job.labels, "sanity_flags": ",".join(metrics["flags"]) or "none"}
    end_ms = int(time.time() * 1000)  # the job's real start and end, for MLflow's run duration
    times = {"start_time_ms": end_ms - int(metrics["wall_time_s"] * 1000), "end_time_ms": end_ms}
    inputs = {"shard_set": job.shard_paths[0].parent.name, "split_dir": Path(job.split_dir).as_posix()}
    # what `prdnet predict` needs to rebuild this model: its spec, the task kind and the output width
    build = {"model_spec": job.model_spec, "task": job.task, "task_kind": job.task_kind, "unit": job.unit,
             "num_classes": num_classes,
             "atom_features": None if job.atom_features is None else Path(job.atom_features).as_posix()}  # fmt: skip
    write_json(out / "run.json", {"params": params, "tags": tags, **times, "inputs": inputs, "build": build})
    write_json(out / "metrics.json", metrics)
