"""`prdnet predict`: a finished job applied to new crystals reproduces its own test predictions
exactly; several jobs give the ensemble mean and spread; bad structures keep a row with a reason."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from prdnet.cli import main
from prdnet.data.prepare import prepare_dataset
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import featurize_dataset
from prdnet.data.splits import random_split, write_splits
from prdnet.data.validate import ValidationRules
from prdnet.predict import PredictError, graph_params, predict_to_csv
from prdnet.training import TrainingConfig, TrainingJob, run_training
from test_own_data import DATASETS, FIXTURES

TASK = "heat_of_formation"
SPEC = {"name": "cgcnn", "preset": "small", "hyperparameters": {"backbone": {"channels": 8, "layers": 1}}}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Two finished CGCNN jobs (seeds 0 and 1) on the CIF-folder fixture, in the workflow's folder layout."""
    results = tmp_path_factory.mktemp("predict") / "results"
    dataset = results / "cifs"
    prepare_dataset("cifs", DATASETS["perovskites_cif"], ValidationRules(), dataset)
    manifest = featurize_dataset(dataset / "structures.parquet", dataset / "graphs" / "set", graph_recipe_for(SPEC), n_shards=2)
    ids = list(pd.read_parquet(dataset / "structures.parquet")["id"])
    write_splits({TASK: {"fold0": random_split(ids, (0.6, 0.2, 0.2), seed=0)}}, dataset / "splits")
    folders = []
    for seed in (0, 1):
        folder = dataset / "runs" / TASK / "fold0" / "cgcnn" / "none" / f"seed{seed}"
        run_training(TrainingJob(
            shard_paths=[dataset / "graphs" / "set" / name for name in manifest["shards"]],
            split_dir=dataset / "splits" / TASK / "fold0", task=TASK, task_kind="regression", unit="eV/atom",
            model_spec=SPEC,
            training=TrainingConfig(epochs=2, batch_size=4, seed=seed), out_dir=folder,
        ))  # fmt: skip
        folders.append(folder)
    return folders


def test_predict_reproduces_the_jobs_test_predictions_exactly(jobs, tmp_path):
    rows = predict_to_csv([jobs[0]], FIXTURES / "cif_folder", tmp_path / "out.csv")
    predicted = {row["id"]: row.get("predicted") for row in rows}
    test = pd.read_parquet(jobs[0] / "predictions.parquet")
    assert len(test) == 2
    for entry_id, value in zip(test["id"], test["predicted"]):
        # the same model, graphs and weights; only the batch's composition differs (float32 kernels
        # sum in another order for another number of rows), so equal to float32 rounding
        assert predicted[entry_id] == pytest.approx(value, rel=1e-5), entry_id


def test_every_structure_gets_a_row_bad_ones_with_their_reason(jobs, tmp_path):
    rows = predict_to_csv([jobs[0]], FIXTURES / "cif_folder", tmp_path / "out.csv")
    by_id = {row["id"]: row for row in rows}
    assert len(rows) == 12  # 10 crystals, orphan-1 (no target needed here), broken-1
    assert by_id["orphan-1"]["reason"] == "" and isinstance(by_id["orphan-1"]["predicted"], float)
    assert by_id["broken-1"]["reason"].startswith("malformed structure file") and "predicted" not in by_id["broken-1"]
    frame = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(frame.columns) == ["id", "predicted (eV/atom)", "reason"] and len(frame) == 12


def test_several_jobs_give_the_ensemble_mean_and_spread(jobs, tmp_path):
    single = [{r["id"]: r.get("predicted") for r in predict_to_csv([job], FIXTURES / "cif_folder", tmp_path / f"{i}.csv")}
              for i, job in enumerate(jobs)]  # fmt: skip
    rows = predict_to_csv(jobs, FIXTURES / "cif_folder", tmp_path / "ensemble.csv")
    for row in rows:
        if row["reason"]:
            continue
        a, b = single[0][row["id"]], single[1][row["id"]]
        assert row["predicted"] == pytest.approx((a + b) / 2, rel=1e-6)
        assert row["predicted_std"] == pytest.approx(abs(a - b) / 2, rel=1e-5, abs=1e-7) and row["n_models"] == 2


def test_extxyz_and_tables_are_read_as_in_training(jobs, tmp_path):
    xyz = predict_to_csv([jobs[0]], FIXTURES / "structures.extxyz", tmp_path / "xyz.csv", {"id_key": "material_id"})
    assert len(xyz) == 10 and all(not row["reason"] for row in xyz) and xyz[0]["id"].startswith("mp-")
    table = predict_to_csv([jobs[0]], FIXTURES / "poscar_table.csv", tmp_path / "table.csv", {"structure_column": "poscar"})
    assert len(table) == 12 and all(isinstance(row["predicted"], float) for row in table)


def test_the_command_line(jobs, tmp_path):
    assert main(["predict", "--job", str(jobs[0]), str(jobs[1]), "--structures", str(FIXTURES / "cif_folder"),
                 "--out", str(tmp_path / "cli.csv")]) == 0  # fmt: skip
    frame = pd.read_csv(tmp_path / "cli.csv", keep_default_na=False)
    assert list(frame.columns) == ["id", "predicted (eV/atom)", "predicted_std (eV/atom)", "n_models", "reason"]


def test_graph_parameters_come_from_the_recorded_fields(jobs):
    run = json.loads((jobs[0] / "run.json").read_text())
    recorded = {k.removeprefix("featurizer."): v for k, v in run["params"].items() if k.startswith("featurizer.")}
    assert graph_params(recorded) == graph_recipe_for(SPEC)
    with pytest.raises(PredictError, match=r"recorded graph parameters \['new_field'\]"):
        graph_params({**recorded, "new_field": 1})
    with pytest.raises(PredictError, match="featurizer version '0'"):
        graph_params({**recorded, "featurizer_version": "0"})


def test_an_unfinished_job_is_a_clear_error(tmp_path):
    with pytest.raises(PredictError, match="not a finished training job"):
        predict_to_csv([tmp_path], FIXTURES / "cif_folder", tmp_path / "out.csv")


def test_a_job_folder_above_its_seeds_points_to_them(tmp_path):
    for seed in ("seed0", "seed1"):
        (tmp_path / seed).mkdir()
        (tmp_path / seed / "metrics.json").write_text("{}")
    with pytest.raises(PredictError, match=rf"a job is one seed's folder, e.g. {tmp_path / 'seed0'} "
                                           r"\(finished seeds here: seed0, seed1\)"):  # fmt: skip
        predict_to_csv([tmp_path], FIXTURES / "cif_folder", tmp_path / "out.csv")
