"""The per-epoch checkpoint of a training job: everything needed to continue exactly.

``checkpoint.pt`` in the job's output folder (beside ``metrics.json``) holds the model, optimizer,
learning-rate scheduler and gradient-scaler states; the random-number states of Python, NumPy,
torch and CUDA of every process; the loader position (epoch and batch: the batch order itself is a
function of (seed, epoch), :mod:`prdnet.distributed`); the partial sums of an interrupted epoch;
the early-stopping state, the best weights and the history. It is written atomically (a
temporary file renamed onto it) after every epoch and when a stop signal arrives, so a kill at
any instant leaves the previous complete checkpoint, and it is deleted once the job has written
its outputs.

A checkpoint belongs to one *identity*: the resolved model spec, the training recipe, the data
(shard set, split ids, task), the atom table and the number of processes. Its SHA-256 digest is
stored in the file; a restarted job with another identity refuses the checkpoint and names the
keys that differ (:class:`CheckpointMismatch`), never mixing two runs.

The file is loadable with ``torch.load(..., weights_only=True)`` (tensors, numbers, strings,
lists and dicts only).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prdnet.io import write_torch

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


class CheckpointMismatch(ValueError):
    """A checkpoint written by a job with another identity (spec, recipe or data)."""


def checkpoint_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_FILE


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def identity_digest(identity: Mapping[str, Any]) -> str:
    """SHA-256 of the identity's canonical JSON (sorted keys)."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def rng_state() -> dict[str, Any]:
    """This process's random-number states: Python, NumPy (legacy global), torch CPU and CUDA."""
    version, internal, gauss = random.getstate()
    _, key, position, has_gauss, cached_gauss = np.random.get_state(legacy=True)
    return {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }  # fmt: skip


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the random-number states saved by :func:`rng_state`."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["key"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))  # fmt: skip
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, identity: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int, float]:
    """Write ``state`` with the identity and its digest atomically; returns (bytes, seconds)."""
    start = time.perf_counter()
    payload = {"format": CHECKPOINT_FORMAT, "digest": identity_digest(identity),
               "identity": canonical_json(identity), **state}  # fmt: skip
    size = write_torch(path, payload)  # serialized in memory: a full disk is an OSError naming the path
    return size, time.perf_counter() - start


def differing_keys(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    keys = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += differing_keys(a, b, name + ".")
        elif canonical_json(a) != canonical_json(b):
            keys.append(name)
    return keys


def load_checkpoint(path: str | Path, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if there is one (None otherwise), after checking that it was
    written for ``identity``.

    Raises :class:`CheckpointMismatch` naming the differing keys when its digest differs."""
    path = Path(path)
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path} has checkpoint format {payload.get('format')!r}, this version reads "
                                 f"{CHECKPOINT_FORMAT}: delete it to train this job from the start")  # fmt: skip
    if payload["digest"] != identity_digest(identity):
        stored = json.loads(payload["identity"])
        current = json.loads(canonical_json(identity))
        raise CheckpointMismatch(
            f"{path} was written by a job with another spec, recipe or data (differing: "
            f"{', '.join(differing_keys(stored, current)) or 'unknown'}); refusing to resume from it. Delete it to "
            "train this job from the start, or restore the configuration it was written with"
        )
    return payload
