"""Mixed precision (training.precision): bf16 autocast on CPU trains a finite model whose errors
stay close to float32's on the same tiny job; an unknown precision is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prdnet.training import TrainingConfig, TrainingJob, run_training
from training_jobs import LABELS, RECIPE, TASK, build_dataset

# CGCNN with the paper's diffraction plug-in (PRDNet's angular summary, prdnet/models/basis.py,
# index_adds float32 into a bf16 buffer under autocast: it needs the source cast to the buffer's dtype)
TINY_CGCNN = {"name": "cgcnn", "preset": "small", "diffraction": "paper",
              "hyperparameters": {"backbone": {"channels": 16, "layers": 2}}}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(mp_embedded_path, tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("precision"), mp_embedded_path, TINY_CGCNN)


def job(dataset, out, precision):
    folder = dataset["folder"]
    return TrainingJob(shard_paths=dataset["shards"], split_dir=folder / "splits" / TASK / "fold0", task=TASK,
                       task_kind="regression", unit="eV/atom", model_spec=TINY_CGCNN,
                       training=TrainingConfig(**{**RECIPE, "epochs": 3, "precision": precision}), out_dir=out,
                       labels=LABELS)  # fmt: skip


def test_bf16_is_finite_and_close_to_fp32(dataset, tmp_path):
    fp32 = run_training(job(dataset, tmp_path / "fp32", "fp32"))
    bf16 = run_training(job(dataset, tmp_path / "bf16", "bf16"))
    history = {name: pd.read_csv(tmp_path / name / "history.csv") for name in ("fp32", "bf16")}
    assert np.isfinite(history["bf16"][["train_loss", "val_mae"]].to_numpy()).all()
    # bf16 keeps 8 significant bits (relative rounding 2^-8 ≈ 0.4 %); over 3 epochs of 3 batches the
    # losses and errors stay within 5 % of float32's
    np.testing.assert_allclose(history["bf16"]["train_loss"], history["fp32"]["train_loss"], rtol=0.05)
    np.testing.assert_allclose(history["bf16"]["val_mae"], history["fp32"]["val_mae"], rtol=0.05)
    assert bf16["test_mae"] == pytest.approx(fp32["test_mae"], rel=0.05)
    predictions = pd.read_parquet(tmp_path / "bf16" / "predictions.parquet")["predicted"]
    assert np.isfinite(predictions).all()
    assert bf16["test_mae"] != fp32["test_mae"], "bf16 computed exactly as fp32: autocast did not act"


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="training.precision must be one of"):
        TrainingConfig(precision="fp8")
