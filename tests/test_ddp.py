"""Data-parallel training (DDP) on CPU with the gloo backend: two processes launched by torchrun
train the same model as one process at the same global batch size, and a two-process job killed
after a checkpoint resumes to exactly the files of an uninterrupted two-process job."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pandas as pd
import pytest

from prdnet.distributed import EpochBatchSampler
from training_jobs import build_dataset, outputs, run, start, train_arguments, wait_for_line

pytestmark = [pytest.mark.workflow]

PROCESSES = 2
# SchNet with the paper's diffraction plug-in: no batch statistics in training mode, so each
# crystal's output does not depend on the rest of its batch. Models with BatchNorm (PRDNet, CGCNN,
# ALIGNN, Matformer, iComFormer) get SyncBatchNorm on CUDA; gloo on CPU has none, and their
# per-process batch statistics then differ from one process's.
SPEC = {"name": "schnet", "preset": "small", "diffraction": "paper"}


def torchrun(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={PROCESSES}",
            "-m", "prdnet.cli", "train", *arguments]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(mp_embedded_path, tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("ddp"), mp_embedded_path, SPEC)


@pytest.fixture(scope="module")
def two_processes(dataset, tmp_path_factory):
    """An uninterrupted two-process job."""
    out = tmp_path_factory.mktemp("two")
    status = run(torchrun(train_arguments(dataset, out, spec=SPEC)), out / "job.log")
    assert status == 0, (out / "job.log").read_text()[-3000:]
    return out


def test_each_process_takes_its_share_of_every_global_batch():
    one = EpochBatchSampler(10, 4, seed=1)
    shares = [EpochBatchSampler(10, 4, seed=1, rank=rank, world_size=2) for rank in range(2)]
    for sampler in (one, *shares):
        sampler.set_epoch(3)
    for whole, *parts in zip(one, *shares, strict=True):
        assert sorted(whole) == sorted(sum(parts, [])) and all(len(part) == len(whole) // 2 for part in parts)
    with pytest.raises(ValueError, match="not a multiple"):
        EpochBatchSampler(10, 3, world_size=2)


def test_two_processes_match_one_at_the_same_global_batch(dataset, two_processes, tmp_path):
    assert run([sys.executable, "-m", "prdnet.cli", "train", *train_arguments(dataset, tmp_path, spec=SPEC)],
               tmp_path / "job.log") == 0  # fmt: skip
    one, two = outputs(tmp_path), outputs(two_processes)
    history = [pd.read_csv(path / "history.csv") for path in (tmp_path, two_processes)]
    # the same crystals in every global batch and the gradient averaged over both halves: equal up
    # to the order of float32 sums (all-reduce vs one batch), 1e-4 relative after 4 epochs
    for column in ("train_loss", "train_mae", "val_mae", "learning_rate"):
        np.testing.assert_allclose(history[1][column], history[0][column], rtol=1e-4)
    np.testing.assert_allclose(two[2]["predicted"], one[2]["predicted"], rtol=1e-4, atol=1e-6)
    assert two[0]["test_mae"] == pytest.approx(one[0]["test_mae"], rel=1e-4)
    assert two[0]["best_epoch"] == one[0]["best_epoch"]
    assert "× 2 processes" in (two_processes / "job.log").read_text()


def test_a_killed_two_process_job_resumes_to_identical_outputs(dataset, two_processes, tmp_path):
    out = tmp_path / "job"
    command = torchrun(train_arguments(dataset, out, spec=SPEC))
    process = start(command, tmp_path / "killed.log")
    try:
        wait_for_line(process, tmp_path / "killed.log", "checkpoint (after epoch 2)")
    finally:
        for pid in worker_pids(process.pid) + [process.pid]:  # the launcher and its workers at once
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
    assert run(command, tmp_path / "resumed.log") == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert "resuming from" in (tmp_path / "resumed.log").read_text()
    expected, got = outputs(two_processes), outputs(out)
    assert got[0] == expected[0] and got[1] == expected[1]
    pd.testing.assert_frame_equal(got[2], expected[2], check_exact=True)


def worker_pids(parent: int) -> list[int]:
    """The child processes of ``parent`` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry))
    return children
