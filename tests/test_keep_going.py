"""A failed training job stops no other job (the profiles' keep-going), and the run ends with one
summary of the unfinished and the flagged jobs, on the console and in results/run_summary.txt."""

from __future__ import annotations

import yaml

from tiny_workflow import MP, snakemake, write_tiny_config

import pytest

pytestmark = pytest.mark.workflow


def test_a_diverging_job_leaves_the_others_to_finish_and_is_named_at_the_end(tmp_path, mp_embedded_path, matminer_data):
    config = write_tiny_config(tmp_path, mp_embedded_path, matminer_data, datasets=(MP,), tasks=["band_gap"])
    config["models"]["broken"] = {**config["models"]["cgcnn"], "training": {"learning_rate": 1e30, "max_grad_norm": None}}
    for experiment in config["experiments"]:
        experiment["models"].append("broken")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    runs = tmp_path / "results" / MP / "runs" / "band_gap" / "fold0"
    for model in ("prdnet", "cgcnn", "dummy"):
        assert list((runs / model).rglob("metrics.json")), f"{model} did not run: {output[-3000:]}"
    assert not list((runs / "broken").rglob("metrics.json"))
    summary = (tmp_path / "results" / "run_summary.txt").read_text()
    assert "unfinished (run the workflow again to retry them; finished jobs are kept):" in summary
    assert f"results/{MP}/runs/band_gap/fold0/broken/none/default/seed0 (log: results/logs/train/{MP}/runs/band_gap/fold0/broken" in summary
    assert summary.splitlines()[0] in output  # on the console too
