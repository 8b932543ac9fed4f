"""Start-up checks: every configured file exists, every preset, task and fold exists, every
experiment plans a job, and `device: cuda` has GPUs. Each fails before any job, naming the
config key and the fix."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from prdnet.config import ConfigError, check_device, check_files, validate_config
from tiny_workflow import MP, snakemake, write_tiny_config


@pytest.fixture
def config(tmp_path, mp_embedded_path, matminer_data):
    """The tiny workflow config (40 MP crystals and jdft2d), valid, with every file in place."""
    return write_tiny_config(tmp_path / "base", mp_embedded_path, matminer_data)


def fails(config, match, base_dir="."):
    with pytest.raises(ConfigError, match=match):
        validate_config(config)
        check_files(config, base_dir)


def test_the_tiny_config_passes_every_check(config):
    validate_config(copy.deepcopy(config))
    check_files(config)
    check_device(config, jobs_run_here=True)


def test_a_missing_data_file_is_named(config, tmp_path):
    config["datasets"][MP]["path"] = str(tmp_path / "nowhere.jsonl.gz")
    fails(config, rf"config key 'datasets.{MP}.path': file .*nowhere.jsonl.gz not found; .*fix the path")


def test_a_missing_published_scores_file_is_named(config):
    config["published_scores"] = "config/no_such_scores.yaml"
    fails(config, r"config key 'published_scores': file config/no_such_scores.yaml not found")


def test_a_missing_folder_or_id_list_is_named(config, tmp_path):
    config["datasets"]["matbench_jdft2d"]["matminer_data"] = str(tmp_path / "no_matminer")
    config["datasets"][MP]["split"] = {"kind": "id_lists", "test": ["no_such_ids.txt"], "val_fraction": 0.1, "seed": 0}
    with pytest.raises(ConfigError) as error:
        check_files(config)
    assert "'datasets.matbench_jdft2d.matminer_data': folder" in str(error.value)
    assert f"'datasets.{MP}.split.test.0': file no_such_ids.txt not found" in str(error.value)


def test_an_unknown_preset_is_named(config):
    config["models"]["cgcnn"]["preset"] = "huge"
    fails(config, r"config key 'models.cgcnn.preset': model cgcnn has no preset 'huge'; its presets in models.yaml: \[.*'small'")


def test_a_task_the_source_does_not_offer_is_named(config):
    config["datasets"][MP]["tasks"] = ["formation_energy", "bandgap"]
    fails(config, rf"config key 'datasets.{MP}.tasks': source mp_2018_cgcnn36k does not offer \['bandgap'\]")


def test_a_file_under_a_name_matbench_does_not_know_points_to_matbench_json(config):
    config["datasets"]["matbench_jdft2d"]["matbench_task"] = "matbench_my_perovskites"
    fails(config, r"'datasets.matbench_jdft2d.matbench_task': 'matbench_my_perovskites' is not a MatBench v0.1 .*use source: matbench_json")


def test_misspelled_experiment_tasks_are_named(config):
    config["experiments"][0]["tasks"] = ["formation_enrgy", "exfoliation_en"]
    fails(config, r"config key 'experiments.0.tasks': \['formation_enrgy'\] are tasks of none of its datasets")


def test_a_fold_that_does_not_exist_is_named(config):
    config["experiments"][0]["folds"] = ["fold0", "fold5"]
    fails(config, rf"config key 'experiments.0.folds': dataset {MP} has no fold \['fold5'\]; its folds: \['fold0'\]")


def test_an_experiment_that_plans_no_job_is_an_error(config):
    config["experiments"][0]["tasks"] = []
    fails(config, r"config key 'experiments.0': plans no training job")


def test_cuda_without_gpus_for_the_jobs_is_an_error(config):
    config["training"]["device"] = "cuda"
    with pytest.raises(ConfigError, match=r"'training.device' is cuda but 'resources.train.gpu' is 0.*set resources.train.gpu"):
        check_device(config, jobs_run_here=False)
    config["resources"]["train"]["gpu"] = 1
    check_device(config, jobs_run_here=False)  # a cluster's GPU nodes have CUDA: not checked here


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_an_error(config):
    config["training"]["device"] = "cuda"
    config["resources"]["train"]["gpu"] = 1
    with pytest.raises(ConfigError, match=r"'training.device' is cuda but this machine has no CUDA device"):
        check_device(config, jobs_run_here=True)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["datasets"][MP].update(path="missing.jsonl.gz"), f"config key 'datasets.{MP}.path': file missing.jsonl.gz not found"),
        (lambda c: c["experiments"][0].update(tasks=["formation_enrgy"]), "config key 'experiments.0.tasks'"),
        (lambda c: (c["training"].update(device="cuda"), c["resources"]["train"].update(gpu=1)), "no CUDA device"),
    ],
    ids=["missing-file", "misspelled-task", "cuda"],
)
@pytest.mark.workflow
def test_the_workflow_stops_before_any_job(config, tmp_path, change, message):
    if "CUDA" in message and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    change(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and message in output, output[-2000:]
    assert not (tmp_path / "results").exists() and "Finished job" not in output


@pytest.mark.workflow
def test_a_dry_run_plans_without_the_data(config, tmp_path):
    config["datasets"][MP]["path"] = "missing.jsonl.gz"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    plan = snakemake(tmp_path, "--dry-run")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert f"warning: missing input files (a real run stops here):\n  config key 'datasets.{MP}.path'" in plan.stderr
