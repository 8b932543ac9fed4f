"""The README's speed figures and cost estimate are what the committed benchmark results give
(benchmarks/readme_figures.py), and every result file says under which conditions it was taken."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import readme_figures  # noqa: E402
from record import Recording  # noqa: E402

from prdnet.models.registry import load_presets  # noqa: E402
from test_paper_plan import TRAIN  # noqa: E402

RESULT_FILES = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
CONDITIONS = ("command", "commit", "torch", "cpu", "threads", "load_before", "load_after", "rounds", "figures")


def test_the_readme_figures_are_those_the_result_files_give():
    readme = readme_figures.README.read_text()
    assert readme_figures.with_blocks(readme, readme_figures.blocks()) == readme, (
        "run benchmarks/readme_figures.py --write"
    )


def test_the_cost_model_counts_the_jobs_the_workflow_plans_for_the_paper():
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert sum(job["jobs"] for job in readme_figures.planned_jobs(config, load_presets())) == TRAIN


@pytest.mark.parametrize("path", [p for p in RESULT_FILES if p.name != "test_suite.json"], ids=lambda p: p.name)
def test_every_committed_result_says_how_and_where_it_was_measured(path):
    record = json.loads(path.read_text())
    assert all(key in record for key in CONDITIONS), [key for key in CONDITIONS if key not in record]
    assert record["commit"] and len(record["load_before"]) == 3 and len(record["load_after"]) == 3


def test_the_attention_figures_come_from_3_rounds_on_a_quiet_machine():
    record = json.loads((ROOT / "benchmarks" / "results" / "attention.json").read_text())
    assert len(record["rounds"]) >= 3
    assert record["load_before"][0] < record["cpu_count"] and record["load_after"][0] < record["cpu_count"]


def test_a_recording_keeps_every_round_and_the_conditions(tmp_path):
    recording = Recording("example", threads=1, results=tmp_path / "example.json")
    recording.start()
    path = recording.write({"median": 2.0}, [1.0, 2.0, 3.0], note="x")
    record = json.loads(path.read_text())
    assert record["rounds"] == [1.0, 2.0, 3.0] and record["figures"] == {"median": 2.0} and record["note"] == "x"
    assert all(key in record for key in CONDITIONS) and record["started"] <= record["finished"]
