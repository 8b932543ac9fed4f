"""The training loop of one job: seed, data of the fold's parts, model, optimizer and schedule,
epochs with a checkpoint after each (resumable, data-parallel under ``torchrun``), weight
selection, the one test evaluation, the sanity guards and the job's files."""

from __future__ import annotations

import hashlib
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
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
from prdnet.distributed import EpochBatchSampler, Process, launched_process
from prdnet.guards import require_finite, sanity_flags
from prdnet.io import file_digest, remove_orphan_temporaries
from prdnet.live_tracking import start_live_run
from prdnet.metrics import primary_metric
from prdnet.models.registry import build_model, count_parameters
from prdnet.preemption import RESUMABLE_EXIT_STATUS, StopRequest, TrainingInterrupted
from prdnet.training.cost import cost_metrics
from prdnet.training.dummy import dummy_fit, dummy_predictions
from prdnet.training.evaluation import Standardizer, autocast, evaluate, predict
from prdnet.training.job import TrainingJob
from prdnet.training.optim import loss_function, make_optimizer, make_scheduler
from prdnet.training.outputs import data_digest, job_structures, model_params, write_history, write_outputs

VALIDATION_DRAW_SEED = 0
"""Seed of the draw that carves a fraction of the whole training fold as validation
(``training.validation: <fraction>``): fixed, so every seed and model of a fold validates on the
same crystals."""


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


def train_epoch(net, loader, optimizer, scheduler, grad_scaler, criterion, scaler, device, kind, config,
                bar, epoch, partial: EpochProgress, should_stop, context: str = "") -> bool:  # fmt: skip
    """Continue the training pass of ``epoch`` from ``partial`` (updated in place, batch by batch:
    the sum of batch losses × crystals, of the running training metric, MAE in the target's unit
    or correct predictions, and the crystals seen by this process).

    After every batch ``should_stop()`` is asked; returns False when it said yes (the epoch is
    unfinished), True at the end of the epoch. Raises :class:`prdnet.guards.NonFiniteError` at the
    first non-finite batch loss, with ``context`` (e.g. the training targets' range) in its message."""
    net.train()
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, config.precision):
            output = net(batch)
        output = output.float()
        target = batch.y if kind == "classification" else scaler.forward(batch.y.to(output.dtype))
        loss = criterion(output, target)
        batch_loss = require_finite(float(loss.detach()), f"the training loss (epoch {epoch}, batch "
                                    f"{partial.batches + 1}; crystals {list(batch.material_id)}{context})")  # fmt: skip
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


def targets_range_note(targets: np.ndarray, unit: str) -> str:
    """For a diverging loss's message: the training targets' range, and a warning when some lie
    more than 1,000 robust standard deviations (IQR / 1.349) from their median, where a loss
    overflows however the model is trained."""
    low, high, median = float(np.min(targets)), float(np.max(targets)), float(np.median(targets))
    q1, q3 = np.percentile(targets, [25, 75])
    scale = float(q3 - q1) / 1.349 or float(np.std(targets)) or 1.0
    worst = max(abs(low - median), abs(high - median)) / scale
    note = f"; the training targets span [{low:.6g}, {high:.6g}] {unit}".rstrip()
    if worst > 1e3:
        note += (f", some {worst:.3g} robust standard deviations from their median {median:.6g}: check the data for "
                 "absurd targets (or set bounds for them: validation.target_bounds)")
    return note


def fold_parts(splits: dict[str, list[str]], validation: str | float) -> dict[str, list[str]]:
    """The ids that train, validate and test under ``training.validation``.

    ``split``: the split's parts as they are; ``none``: train = the whole training fold (the
    split's train + val ids, in that order), val = none; a fraction f: the whole training fold
    sorted by id, permuted by a generator seeded with :data:`VALIDATION_DRAW_SEED`, its first
    round(f·n) ids validate and the rest train (each part back in id order). The test part is
    never touched."""
    if validation == "split":
        return dict(splits)
    whole = list(splits["train"]) + list(splits["val"])
    if validation == "none":
        return {"train": whole, "val": [], "test": list(splits["test"])}
    ordered = np.array(sorted(whole), dtype=object)
    order = np.random.default_rng(VALIDATION_DRAW_SEED).permutation(len(ordered))
    n_val = round(float(validation) * len(ordered))
    return {"train": sorted(ordered[order[n_val:]].tolist()), "val": sorted(ordered[order[:n_val]].tolist()),
            "test": list(splits["test"])}


def log(message: str) -> None:
    """One progress line on standard output (the job's log), flushed at once."""
    print(message, flush=True)


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
    splits = fold_parts({name: read_split(job.split_dir / f"{name}.txt") for name in SPLIT_NAMES}, config.validation)
    check_shard_recipe(job.shard_paths, graph_recipe_for(job.model_spec))  # the model's own graphs, or refuse
    crystals, graphs = read_shards(job.shard_paths, verify=False)  # once, for all three splits; verified just above
    data = {
        name: select_data(crystals, graphs, job.task, ids, classification=classification)
        for name, ids in splits.items()
    }
    digest = data_digest(job_structures(job, crystals), job.task, splits) if process.main else None
    sampler = EpochBatchSampler(len(data["train"]), config.batch_size, seed=config.seed, shuffle=True,
                                rank=process.rank, world_size=process.world_size)  # fmt: skip
    loaders = {
        "train": DataLoader(data["train"], batch_sampler=sampler),
        "val": make_loader(data["val"], config.batch_size, shuffle=False),
        "test": make_loader(data["test"], config.batch_size, shuffle=False),
    }
    train_targets = torch.cat([d.y for d in data["train"]])
    scaler = Standardizer(train_targets, enabled=not classification and config.standardize_targets)
    validating = len(data["val"]) > 0
    targets_note = "" if classification else targets_range_note(train_targets.double().numpy(), job.unit)
    if not validating and config.select == "best_val":
        raise ValueError(f"nothing validates (validation part of {job.split_dir} is empty, training.validation "
                         f"{config.validation!r}), so select: best_val has nothing to choose by: set select: last")
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
                + f"; attempt {state.attempt}, earlier stops by a signal: {'; '.join(state.stops) or 'none'} (an attempt "
                   "killed or ended by an error leaves no record here: its log has the cause)")  # fmt: skip
            if state.history:
                write_history(job.out_dir, state.history)  # the epochs so far, whatever a restart removed
    resumed = saved is not None
    loop_seconds, epochs_here = 0.0, 0  # the cost of the epochs this process runs (prdnet.training.cost)
    live = start_live_run(job.live_tracking, job.out_dir, job.labels, resumed) if process.main else None
    while not state.finished and state.epoch <= config.epochs:
        epoch = state.epoch
        epoch_start = time.perf_counter()
        sampler.set_epoch(epoch, state.partial.batches)
        if state.partial.batches == 0:
            state.partial.learning_rate = optimizer.param_groups[0]["lr"]
        learning_rate = state.partial.learning_rate
        completed = train_epoch(net, loaders["train"], optimizer, scheduler, grad_scaler, criterion, scaler, device,
                                job.task_kind, config, bar, epoch, state.partial, interrupted, targets_note)  # fmt: skip
        if not completed:
            leave(f"in epoch {epoch} after batch {state.partial.batches}")
        loss_sum, metric_sum, count = distributed.sum_over_processes(
            [state.partial.loss_sum, state.partial.metric_sum, state.partial.count], process)
        train_loss, train_metric = loss_sum / max(count, 1), metric_sum / max(count, 1)
        val_value = float("nan")  # no validation part: nothing to record, select or stop on
        if validating:
            val_predictions = predict(model, loaders["val"], device, job.task_kind, scaler, config.precision)
            val_value = evaluate(val_predictions, job.task_kind)[metric]
            require_finite(val_value, f"the validation {metric} (epoch {epoch})")
        state.history.append({
            "epoch": epoch, "train_loss": train_loss, f"train_{metric}": train_metric,
            f"val_{metric}": val_value, "learning_rate": learning_rate,
        })  # fmt: skip
        if not validating:
            state.best_epoch = epoch
        elif state.best_value is None or better(val_value, state.best_value):
            state.best_value, state.best_epoch = val_value, epoch
            state.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        stop_early = config.patience is not None and epoch - state.best_epoch >= config.patience
        state.epoch, state.partial = epoch + 1, EpochProgress()
        state.finished = stop_early or epoch == config.epochs
        seconds = time.perf_counter() - epoch_start
        loop_seconds, epochs_here = loop_seconds + seconds, epochs_here + 1
        if process.main:
            write_history(job.out_dir, state.history)  # rewritten after every epoch: progress readable while it runs
            log(f"epoch {epoch}/{config.epochs}  train_loss {train_loss:.5g}  train_{metric} {train_metric:.5g}  "
                f"val_{metric} {val_value:.5g}  "
                f"lr {learning_rate:.3g}  {seconds:.1f} s/epoch  "
                f"ETA {seconds * (config.epochs - epoch):.0f} s")  # fmt: skip
            if stop_early:
                log(f"early stop: no validation improvement for {config.patience} epochs "
                    f"(best epoch {state.best_epoch})")  # fmt: skip
        save(f"after epoch {epoch}")
        if live is not None:
            live.log_epoch(state.history[-1])
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
                         [row["train_loss"] for row in history], [row[f"val_{metric}"] for row in history if validating],
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
    metrics.update(cost_metrics(device, process.world_size, metrics["wall_time_s"], loop_seconds, epochs_here,
                                len(history), len(data["train"])))  # fmt: skip
    checkpoint = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "target_mean": scaler.mean,
        "target_std": scaler.std,
    }
    if process.main:
        write_outputs(job, checkpoint, history, test_predictions, metrics, max(num_classes, 2), digest)
        path.unlink(missing_ok=True)  # the outputs are complete: the checkpoint is no longer needed
        remove_orphan_temporaries(path)  # and no half-written one a killed attempt left
    distributed.barrier(process)
    return metrics
