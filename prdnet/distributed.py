"""Batches of an epoch as a pure function of (seed, epoch), and data parallelism with
torch.distributed (one process per device, launched by ``torchrun``).

Batch order: epoch e of a run seeded s visits the training crystals in the order
``numpy.random.default_rng([s, e]).permutation(n)`` (the identity without shuffling), cut into
global batches of ``batch_size`` consecutive positions. Because the order depends on (seed, epoch)
only, a resumed job continues exactly where it stopped: it asks for epoch e from batch k on
(:class:`EpochBatchSampler`), with no loader state to save.

Data parallelism (DDP): with W processes the order is first padded to a multiple of W by
repeating its first positions (as ``torch.utils.data.DistributedSampler`` does), and process r
takes every W-th crystal of each global batch, starting at r. Each process then holds
``batch_size / W`` crystals per step, the union over processes of step k is global batch k, and
the gradients DDP averages are those of the global batch (up to summation order). The global
batch size therefore stays the recipe's ``batch_size``, whatever W.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` crystals: a permutation drawn from
    ``numpy.random.default_rng([seed, epoch])``, or 0..n-1 without shuffling."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class EpochBatchSampler(Sampler[list[int]]):
    """Index batches of one epoch for one process (a ``batch_sampler`` for a ``DataLoader``).

    ``set_epoch(epoch, start_batch)`` selects the epoch and skips its first ``start_batch`` global
    batches (a resumed epoch). Raises ``ValueError`` when ``batch_size`` is not a multiple of
    ``world_size``."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:  # fmt: skip
        if batch_size % world_size:
            raise ValueError(f"training.batch_size {batch_size} is not a multiple of the {world_size} processes "
                             "of data-parallel training: each process takes batch_size / processes "
                             "crystals")  # fmt: skip
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 1, 0

    @property
    def padded_size(self) -> int:
        """n rounded up to a multiple of world_size (the order's length)."""
        return -(-self.n // self.world_size) * self.world_size

    def batches_per_epoch(self) -> int:
        return -(-self.padded_size // self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(self.n, self.seed, self.epoch, self.shuffle)
        if self.padded_size > self.n:
            order = np.concatenate([order, order[: self.padded_size - self.n]])
        for batch in range(self.start_batch, self.batches_per_epoch()):
            members = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield members[self.rank :: self.world_size].tolist()


@dataclass(frozen=True)
class Process:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes the job's files and logs."""
        return self.rank == 0


def launched_process() -> Process:
    """The process's rank from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    return Process(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))  # fmt: skip


def start(process: Process, device: torch.device) -> None:
    """Join the process group: NCCL on CUDA, gloo on CPU (no-op for one process)."""
    if process.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop(process: Process) -> None:
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_processes(values: list[float], process: Process) -> list[float]:
    """Element-wise sum of ``values`` over every process (float64; identity for one process)."""
    if not process.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_process(flag: bool, process: Process) -> bool:
    """Whether ``flag`` is set in any process (every process gets the same answer)."""
    return sum_over_processes([float(flag)], process)[0] > 0


def gather_objects(value, process: Process) -> list:
    """[value of rank 0, value of rank 1, ...] on every process."""
    if not process.distributed:
        return [value]
    gathered = [None] * process.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()
