"""Train one model on one (dataset, task, fold, seed) and evaluate it once on the test part.

Procedure: the job's recipe (:class:`TrainingConfig`, :mod:`prdnet.training.recipe`) is its model
preset's (the official code's, config/models.yaml, with its source), then the protocol its spec
names (config/protocols.yaml, :mod:`prdnet.protocols`: how a published number was made),
then the workflow's ``training`` block, then the spec's own, key by key. The recipe fixes the loss
(L1 or MSE; cross-entropy for classification), optimizer, learning rate, batch size, epochs,
schedule (stepped after every batch), gradient clipping, early stopping (off unless ``patience``),
what of the fold validates (``validation``: the split's part, none, or a fraction carved anew),
the weights tested (``select``: best validation epoch or last) and whether regression targets are
standardized with the training part's mean and standard deviation (``standardize_targets``).
The test part is evaluated exactly once, at the end. One line per epoch goes to the job's log.

Modules: :mod:`~prdnet.training.recipe` and :mod:`~prdnet.protocols` (what runs),
:mod:`~prdnet.training.optim` (optimizer, schedule, loss), :mod:`~prdnet.training.evaluation`
(standardization, predictions, metrics), :mod:`~prdnet.training.loop` (the epochs, checkpoints,
test), :mod:`~prdnet.training.dummy` (the Dummy baseline), :mod:`~prdnet.training.outputs` (the
job's files).

Outputs in the job folder: ``metrics.json``, ``predictions.parquet`` (id, true, predicted
[, probability]), ``history.csv`` (per epoch), ``model.pt`` (weights only, loadable with
``torch.load(..., weights_only=True)``) and ``run.json`` (everything the MLflow import needs).
``metrics.json`` is written last: its presence marks a finished job.
"""

from __future__ import annotations

from typing import Any

from prdnet.guards import DUMMY_MODEL
from prdnet.training.dummy import run_dummy
from prdnet.training.job import TrainingJob
from prdnet.training.loop import run_training, training_identity
from prdnet.training.recipe import TrainingConfig, resolve_training

__all__ = ["TrainingConfig", "TrainingJob", "resolve_training", "run_dummy", "run_job", "run_training",
           "training_identity"]


def run_job(job: TrainingJob) -> dict[str, Any]:
    """Run a training job, or the Dummy's when the spec names ``dummy``."""
    return run_dummy(job) if job.model_spec["name"] == DUMMY_MODEL else run_training(job)
