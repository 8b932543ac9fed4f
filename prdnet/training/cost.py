"""What a training job cost: time per epoch, device-hours, peak memory, throughput (metrics.json).

- ``seconds_per_epoch``: the training loop's time per epoch (training and validation passes),
  over the epochs this process ran (a resumed job's earlier epochs ran elsewhere);
- ``train_seconds``: ``seconds_per_epoch × epochs_run``;
- ``device_hours``: ``wall_time_s × device_count / 3600``, where ``device_count`` is the GPUs of
  the job (one per process) or, on the CPU, the threads torch ran on (× processes): GPU-hours or
  CPU-hours as a cluster bills them;
- ``peak_rss_mb``: the largest resident memory of the job's process (``getrusage`` ``ru_maxrss``,
  KiB on Linux), MiB; ``peak_cuda_mb``: ``torch.cuda.max_memory_allocated``, MiB (None on the CPU);
- ``crystals_per_second``: training crystals × epochs / ``train_seconds``.
"""

from __future__ import annotations

import platform
import resource
from pathlib import Path
from typing import Any

import torch

MIB = 2**20
MEASURED_FIELDS = ("wall_time_s", "seconds_per_epoch", "train_seconds", "device_hours", "peak_rss_mb", "peak_cuda_mb",
                   "crystals_per_second")  # fmt: skip
"""The metrics.json fields that measure the run itself (time, memory): they differ between two
identical runs, and a resumed job's describe its last process; everything else repeats exactly."""


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's name (``torch.cuda.get_device_name``) or the CPU's model name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def peak_rss_mb() -> float:
    """The largest resident set size of this process so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cost_metrics(device: torch.device, world_size: int, wall_time_s: float, loop_seconds: float, epochs_here: int,
                 epochs_run: int, n_train: int) -> dict[str, Any]:  # fmt: skip
    """The cost fields of this module's docstring for one job."""
    per_epoch = loop_seconds / epochs_here if epochs_here else float("nan")
    train_seconds = per_epoch * epochs_run
    count = world_size if device.type == "cuda" else torch.get_num_threads() * world_size
    return {
        "seconds_per_epoch": per_epoch,
        "train_seconds": train_seconds,
        "device_name": device_name(device),
        "device_count": count,
        "device_hours": wall_time_s * count / 3600.0,
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None,
        "crystals_per_second": n_train * epochs_run / train_seconds if train_seconds > 0 else float("nan"),
    }
