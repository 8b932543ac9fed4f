"""Checkpoint and resume: a job killed (SIGKILL) or stopped (SIGTERM, SIGUSR1) at any point and
started again ends with exactly the files of a job that ran straight through; a checkpoint of
another spec is refused. Each job is a real `prdnet train` process (tests/training_jobs.py)."""

from __future__ import annotations

import os
import re
import signal
from dataclasses import replace

import pandas as pd
import pytest
import torch

from prdnet.checkpoint import CHECKPOINT_FILE, CheckpointMismatch, save_checkpoint
from prdnet.preemption import RESUMABLE_EXIT_STATUS, StopRequest
from prdnet.training import TrainingConfig, TrainingJob, run_training, training_identity
from training_jobs import (LABELS, RECIPE, TASK, TINY_PRDNET, build_dataset, interrupt_after, outputs, run,
                           train_command)  # fmt: skip

pytestmark = [pytest.mark.workflow]


@pytest.fixture(scope="module")
def dataset(mp_embedded_path, tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("resume"), mp_embedded_path)


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    """The reference: the job run from start to end without interruption."""
    out = tmp_path_factory.mktemp("straight")
    assert run(train_command(dataset, out), out / "job.log") == 0, (out / "job.log").read_text()[-3000:]
    return out


def test_the_job_log_has_one_progress_line_per_epoch_and_no_progress_bar(straight):
    log = (straight / "job.log").read_text()
    lines = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert len(lines) == RECIPE["epochs"]
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"epoch {epoch}/{RECIPE['epochs']}  train_loss \S+  train_mae \S+  val_mae \S+  lr \S+  "
                            r"[\d.]+ s/epoch  ETA \d+ s", line), line  # fmt: skip
    assert "\r" not in log and "it/s" not in log  # tqdm only on a terminal
    history = pd.read_csv(straight / "history.csv")  # the same per epoch, imported into MLflow as metric steps
    assert list(history["epoch"]) == list(range(1, RECIPE["epochs"] + 1))


def assert_same_outputs(expected_dir, got_dir):
    expected, got = outputs(expected_dir), outputs(got_dir)
    assert got[0] == expected[0]  # metrics.json, but for the wall time
    assert got[1] == expected[1]  # history.csv, byte for byte
    pd.testing.assert_frame_equal(got[2], expected[2], check_exact=True)  # predictions
    assert not (got_dir / CHECKPOINT_FILE).exists(), "the checkpoint outlived the finished job"


def test_kill_9_after_a_checkpoint_then_restart_gives_identical_outputs(dataset, straight, tmp_path):
    out = tmp_path / "job"
    command = train_command(dataset, out)
    status = interrupt_after(command, tmp_path / "killed.log", "checkpoint (after epoch 2)", signal.SIGKILL)
    assert status == -signal.SIGKILL
    checkpoint = torch.load(out / CHECKPOINT_FILE, weights_only=True)  # loadable without pickled code
    assert checkpoint["epoch"] >= 3 and len(checkpoint["history"]) == checkpoint["epoch"] - 1
    assert {"model", "optimizer", "scheduler", "grad_scaler", "best_state", "best_epoch", "digest"} <= set(checkpoint)
    assert set(checkpoint["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert not (out / "metrics.json").exists()

    assert run(command, tmp_path / "resumed.log") == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert "resuming from" in (tmp_path / "resumed.log").read_text()
    assert_same_outputs(straight, out)


def test_sigterm_mid_epoch_checkpoints_exits_75_and_the_restart_is_identical(dataset, straight, tmp_path):
    how = signal.SIGTERM
    out = tmp_path / "job"
    command = train_command(dataset, out)
    # the first epoch's checkpoint line: the signal lands in epoch 2 (its first batches)
    status = interrupt_after(command, tmp_path / "stopped.log", "checkpoint (after epoch 1)", how)
    log = (tmp_path / "stopped.log").read_text()
    assert status == RESUMABLE_EXIT_STATUS, log[-3000:]
    assert f"stopped by {how.name}" in log and (out / CHECKPOINT_FILE).exists()

    assert run(command, tmp_path / "resumed.log") == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert_same_outputs(straight, out)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_and_sigusr1_are_recorded_as_stop_requests_while_installed(how):
    before = signal.getsignal(how)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), how)
        assert stop.requested and stop.signal_name == how.name
    assert signal.getsignal(how) is before


def test_a_checkpoint_of_another_recipe_is_refused_naming_the_difference(dataset, tmp_path):
    folder = dataset["folder"]
    job = TrainingJob(shard_paths=dataset["shards"], split_dir=folder / "splits" / TASK / "fold0", task=TASK,
                      task_kind="regression", unit="eV/atom", model_spec=TINY_PRDNET,
                      training=TrainingConfig(**RECIPE), out_dir=tmp_path, labels=LABELS)  # fmt: skip
    other = replace(job, training=replace(job.training, learning_rate=job.training.learning_rate / 2))
    save_checkpoint(tmp_path / CHECKPOINT_FILE, training_identity(other, world_size=1), {"epoch": 2})
    with pytest.raises(CheckpointMismatch, match=r"another spec.*training\.learning_rate"):
        run_training(job)
    assert not (tmp_path / "metrics.json").exists()
