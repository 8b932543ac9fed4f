"""`prdnet check-config` runs the workflow's start-up checks (prdnet.config.check_startup) and
prints one line per error, with the key and the fix, and no traceback."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from prdnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def check(tmp_path, monkeypatch, change) -> str:
    """check-config's output for config/config.yaml changed by ``change`` (run from the project root)."""
    config = copy.deepcopy(BASE)
    change(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(ROOT)
    try:
        main(["check-config", str(path)])
    except SystemExit as stop:
        return str(stop.code)
    return "valid"


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(config):
        block = config
        for key in keys[:-1]:
            block = block.setdefault(key, {})
        block[keys[-1]] = value

    return change


def test_the_shipped_default_config_is_valid(tmp_path, monkeypatch):
    assert check(tmp_path, monkeypatch, lambda config: None) == "valid"


PROBES = {
    "cuda without a GPU for the jobs": (
        lambda c: (c["training"].update(device="cuda"), c["resources"]["train"].update(gpu=0)),
        "config key 'training.device' is cuda but 'resources.train.gpu' is 0"),
    "results_dir that is a file": (_set("results_dir", "README.md"),
                                   "config key 'results_dir': README.md cannot be a folder"),
    "seed and seeds": (_set("training", "seed", 3), "sets both `seed` and `seeds`: keep `seed`"),
    "unknown split kind": (
        lambda c: c["datasets"]["mp_2018_cgcnn36k"].update(split={"kind": "holdout", "seed": 1}),
        "unknown split kind 'holdout'; the kinds are random, matbench, matformer, fold_column, id_lists"),
    "a server from the environment and a URI": (
        lambda c: c["mlflow"].update(use_env_tracking_uri=True, tracking_uri="http://host:5000"),
        "must be null when mlflow.use_env_tracking_uri is true"),
    "matbench folds from a source without them": (
        lambda c: c["datasets"].update(own={"source": "matbench_json", "path": "README.md", "targets": {
            "e": {"column": "e", "kind": "regression", "unit": "eV"}}, "tasks": ["e"],
            "split": {"kind": "matbench", "val_fraction": 0.1, "seed": 1}}),
        "matbench takes MatBench's official test folds from the source, and source 'matbench_json' gives none"),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_each_start_up_error_is_one_line_with_its_key_and_no_traceback(tmp_path, monkeypatch, capsys, probe):
    change, expected = PROBES[probe]
    output = check(tmp_path, monkeypatch, change)
    assert expected in output, output
    assert "Traceback" not in output + capsys.readouterr().err
    assert all(line.startswith(str(tmp_path / "config.yaml") + ": config key") for line in output.splitlines()), output


def test_cuda_asked_for_jobs_run_on_a_machine_without_it_is_an_error_unless_they_run_elsewhere(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    change = lambda c: (c["training"].update(device="cuda"), c["resources"]["train"].update(gpu=1))  # noqa: E731
    assert "this machine has no CUDA device" in check(tmp_path, monkeypatch, change)
    config = copy.deepcopy(BASE)
    change(config)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(ROOT)
    main(["check-config", "--jobs-run-elsewhere", str(tmp_path / "cluster.yaml")])  # no SystemExit: valid
