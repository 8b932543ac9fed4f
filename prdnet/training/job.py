"""What one training job needs (:class:`TrainingJob`): data, task, model spec, recipe, output folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prdnet.guards import SanityThresholds
from prdnet.live_tracking import LiveTracking
from prdnet.training.recipe import TrainingConfig


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
    structures: Path | None = None
    """The prepared dataset's structures.parquet, whose structures the job's data digest covers
    (None: the structures in the graph shards, in the recipe's cell)."""
    live_tracking: LiveTracking | None = None
    """Where process 0 logs every epoch while it trains (:mod:`prdnet.live_tracking`); None: nowhere."""
