"""The recipe's optimizer, learning-rate schedule and loss (:class:`~prdnet.training.recipe.TrainingConfig`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from prdnet.training.recipe import TrainingConfig


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
