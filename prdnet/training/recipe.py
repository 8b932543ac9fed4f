"""A job's training recipe (:class:`TrainingConfig`) and how it is resolved: the model preset's
recipe (its official code's, config/models.yaml), then the protocol the spec names
(config/protocols.yaml, :mod:`prdnet.protocols`), then the workflow's ``training`` block,
then the spec's own ``training`` block, key by key (:func:`resolve_training`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from prdnet.guards import DUMMY_MODEL
from prdnet.models.registry import resolve_spec
from prdnet.protocols import Protocol, protocol_for

VALIDATION_CHOICES = ("split", "none")
"""``training.validation``: the split's own validation part, none (the whole training fold
trains), or a fraction (a number in (0, 1)) of the whole training fold carved anew."""


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
    validation: str | float = "split"
    """What of the fold's training part (the split's train + val ids) validates: ``split`` (the
    split's validation part, as made by the dataset's ``split``), ``none`` (train on the whole
    training fold, validate on nothing; needs ``select: last`` and no ``patience``), or a fraction
    f in (0, 1): f of the whole training fold carved anew as validation
    (:func:`prdnet.training.loop.fold_parts`)."""
    standardize_targets: bool = True
    """Regression: train on (y − μ) / σ with the training part's μ, σ (false: on raw targets, as
    ALIGNN, Matformer and ComFormer do)."""
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
        validation = self.validation
        fraction = isinstance(validation, (int, float)) and not isinstance(validation, bool)
        if not (validation in VALIDATION_CHOICES or (fraction and 0 < validation < 1)):
            raise ValueError(f"training.validation must be one of {list(VALIDATION_CHOICES)} or a fraction in (0, 1), "
                             f"not {validation!r}")
        if validation == "none" and (self.select != "last" or self.patience is not None):
            raise ValueError("training.validation: none (the whole training fold trains) leaves nothing to select or "
                             f"stop on: set select: last and patience: null (got select: {self.select!r}, "
                             f"patience: {self.patience!r})")
        if not isinstance(self.standardize_targets, bool):
            raise ValueError(f"training.standardize_targets must be true or false, not {self.standardize_targets!r}")


def resolve_training(model_spec: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                     protocols: Mapping[str, Protocol] | None = None) -> TrainingConfig:
    """The recipe of a job: the model preset's recipe, then the spec's ``protocol`` (if it names
    one; ``protocols`` defaults to config/protocols.yaml), then ``overrides`` (the workflow's
    ``training`` block), then the spec's own ``training`` block, each key by key.

    Raises ``ValueError`` naming an unknown key, or a protocol that is unknown or made for
    another model or preset.
    """
    recipe = {**protocol_recipe(model_spec, protocols), **(overrides or {}), **(model_spec.get("training") or {})}
    known = {f.name for f in fields(TrainingConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"unknown training key(s) {unknown}; known: {sorted(known)}")
    return TrainingConfig(**recipe)


def protocol_recipe(model_spec: Mapping[str, Any], protocols: Mapping[str, Protocol] | None = None) -> dict[str, Any]:
    """The recipe the spec's protocol fixes: its preset's recipe with the protocol's keys over it
    (the preset's own recipe when the spec names no protocol; empty for the Dummy)."""
    if model_spec["name"] == DUMMY_MODEL:
        return {}
    preset = resolve_spec({key: value for key, value in model_spec.items() if key != "training"})["training"]
    protocol = protocol_for(model_spec, protocols)
    return {**preset, **(protocol.training if protocol else {})}


# keys that change how a job runs, not what it computes
_NOT_PROTOCOL = {"seed", "device", "source"}


def protocol_deviations(model_spec: Mapping[str, Any], config: TrainingConfig,
                        protocols: Mapping[str, Protocol] | None = None) -> dict[str, list[Any]]:
    """Keys where the recipe that runs differs from the one its protocol fixes, as
    {key: [ours, protocol's]} (seed, device and source aside): what the workflow's or the spec's
    ``training`` block changed. Empty: the job ran its protocol as published."""
    fixed = TrainingConfig(**protocol_recipe(model_spec, protocols))
    deviations = {}
    for f in fields(TrainingConfig):
        ours, theirs = getattr(config, f.name), getattr(fixed, f.name)
        if f.name not in _NOT_PROTOCOL and ours != theirs:
            deviations[f.name] = [list(ours) if isinstance(ours, tuple) else ours,
                                  list(theirs) if isinstance(theirs, tuple) else theirs]
    return deviations
