"""Cost beside error (issue 23): every training job measures what it cost (metrics.json), the
tables sum it per model variant and the report plots error against device-hours per task."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from prdnet.html_report import build_report
from prdnet.report import write_tables
from prdnet.training import run_training
from prdnet.training.cost import cpu_name
from test_train import TINY_PRDNET, dataset, make_job  # noqa: F401  (the module's fixture)

COST_FIELDS = ("seconds_per_epoch", "train_seconds", "device_name", "device_count", "device_hours", "peak_rss_mb",
               "peak_cuda_mb", "crystals_per_second")  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(dataset, tmp_path_factory):  # noqa: F811
    """Four finished jobs of a tiny run: PRDNet without and with the paper's plug-in, seeds 0 and 1."""
    results = tmp_path_factory.mktemp("cost") / "results"
    folders = []
    for diffraction in ("none", "paper"):
        for seed in (0, 1):
            out = results / "tiny" / "runs" / "formation_energy" / "fold0" / "prdnet" / diffraction / "default" / f"seed{seed}"
            job = make_job(dataset, out, spec={**TINY_PRDNET, "diffraction": None if diffraction == "none" else diffraction})
            job = dataclasses.replace(job, labels={**job.labels, "task": "formation_energy", "diffraction": diffraction,
                                                   "seed": str(seed)})  # fmt: skip
            run_training(job)
            folders.append(out)
    return results, folders


def test_a_job_writes_what_it_cost_to_metrics_json(tiny_run):
    _, folders = tiny_run
    metrics = json.loads((folders[0] / "metrics.json").read_text())
    assert set(COST_FIELDS) <= set(metrics)
    assert metrics["seconds_per_epoch"] > 0 and metrics["train_seconds"] == pytest.approx(metrics["seconds_per_epoch"] * metrics["epochs_run"])
    assert metrics["train_seconds"] <= metrics["wall_time_s"]
    assert metrics["device_name"] == cpu_name() and metrics["device_count"] == torch.get_num_threads()
    assert metrics["device_hours"] == pytest.approx(metrics["wall_time_s"] * metrics["device_count"] / 3600)
    assert 50 < metrics["peak_rss_mb"] < 100_000 and metrics["peak_cuda_mb"] is None  # MiB of a CPU job
    assert metrics["crystals_per_second"] == pytest.approx(metrics["n_train"] * metrics["epochs_run"] / metrics["train_seconds"])


def test_the_tables_have_a_cost_section_per_variant(tiny_run):
    results, folders = tiny_run
    write_tables("tiny", folders, None, results / "tables" / "tiny")
    text = (results / "tables" / "tiny.md").read_text()
    cost = text.split("## Cost", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in cost.splitlines() if line.startswith("| formation_energy |")]
    assert len(rows) == 2  # prdnet without and with the plug-in
    assert all(re.search(r"\| [\d.e+-]+ CPU-h \(.+\) \|", row) for row in rows)
    parameters = [row.split(" | ")[5] for row in rows]
    assert parameters[0] != parameters[1]  # the plug-in adds parameters


def test_the_report_shows_the_cost_table_and_one_error_cost_plot_per_task(tiny_run):
    results, folders = tiny_run
    write_tables("tiny", folders, None, results / "tables" / "tiny")
    page = build_report(folders, results, {"training": {}}, commit="abc")
    assert "<h4>Cost</h4>" in page  # the tables' "## Cost" under the dataset's h2 and the tables' h3
    assert "device-hours (all jobs)" in page
    assert page.count('data-kind="error-cost"') == 1  # one task
