"""Predictions of a split and their metrics: targets standardized with training statistics
(:class:`Standardizer`), a model's outputs in the target's unit, mixed-precision autocast."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prdnet.metrics import task_metrics


class Standardizer:
    """y_std = (y − μ) / σ with μ, σ from the training targets only (identity for classification)."""

    def __init__(self, train_targets: torch.Tensor, enabled: bool) -> None:
        self.enabled = enabled
        self.mean = float(train_targets.float().mean()) if enabled else 0.0
        std = float(train_targets.float().std()) if enabled and len(train_targets) > 1 else 1.0
        self.std = std if std > 0 else 1.0

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std if self.enabled else y

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean if self.enabled else y


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``training.precision`` → the dtype of autocast's reduced-precision operations."""


def autocast(device: torch.device, precision: str):
    """Autocast to bf16 or fp16 (matrix products and the like; reductions stay float32), or a
    no-op for fp32."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")


def predict(model: nn.Module, loader, device: torch.device, kind: str, scaler: Standardizer,
            precision: str = "fp32") -> dict[str, np.ndarray]:  # fmt: skip
    """Predictions of a whole split in loader order: ids, true, predicted (and probability)."""
    model.eval()
    ids, truths, outputs = [], [], []
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            with autocast(device, precision):
                output = model(batch)
            outputs.append(output.float().cpu())
            truths.append(batch.y.cpu())
            ids.extend(batch.material_id)
    output = torch.cat(outputs)
    result = {"id": np.array(ids, dtype=object), "true": torch.cat(truths).numpy()}
    if kind == "classification":
        probability = torch.softmax(output, dim=-1)
        result["predicted"] = probability.argmax(dim=-1).numpy()
        result["probability"] = probability[:, 1].numpy()
    else:
        result["predicted"] = scaler.inverse(output).numpy()
    return result


def evaluate(predictions: dict[str, np.ndarray], kind: str) -> dict[str, float]:
    """Metrics of a prediction dict from :func:`predict`."""
    return task_metrics(kind, predictions["true"], predictions["predicted"], predictions.get("probability"))
