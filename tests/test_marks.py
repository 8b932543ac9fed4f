"""The suite's marks say what a test starts (tests/conftest.py): `make test-fast` deselects
`workflow`, `service`, `slow` and `network`, and a test that starts a workflow or a service
without its mark fails instead of slipping into the unit loop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mark_needed, pytest_collection_modifyitems

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command, needed",
    [
        ([str(BIN / "snakemake"), "--dry-run"], ("workflow", "snakemake")),
        ([sys.executable, "-m", "prdnet.cli", "train", "--shards", "a.parquet"], ("workflow", "prdnet.cli")),
        ([sys.executable, "-m", "torch.distributed.run", "--standalone", "-m", "prdnet.cli", "train"],
         ("workflow", "torch.distributed.run")),
        ([sys.executable, "-m", "mlflow", "ui", "--port", "5000"], ("service", "mlflow")),
        (["/usr/bin/chromium", "--headless", "--dump-dom", "file:///report.html"], ("service", "chromium")),
        (["runuser", "-u", "postgres", "--", "initdb"], ("service", "runuser")),
        ("sbatch --wrap true", ("service", "sbatch")),
        ([sys.executable, "-m", "prdnet.gpu_slots", "--gpus", "1", "--", "true"], None),
        (["git", "rev-parse", "HEAD"], None),
        ([sys.executable, "-c", "import prdnet.training"], None),
    ],
    ids=["snakemake", "prdnet", "torchrun", "mlflow-ui", "chromium", "postgres", "slurm-shell", "gpu-slots", "git",
         "python"],
)  # fmt: skip
def test_each_command_needs_the_mark_of_what_it_starts(command, needed):
    assert mark_needed(command) == needed


def test_an_unmarked_test_that_starts_snakemake_fails_before_the_process_starts(tmp_path):
    with pytest.raises(AssertionError, match=r"starts `snakemake` but is not marked `workflow`"):
        subprocess.run([str(BIN / "snakemake"), "--version"], cwd=tmp_path, capture_output=True, timeout=60)


@pytest.mark.workflow
def test_a_marked_test_starts_it(tmp_path):
    run = subprocess.run([str(BIN / "snakemake"), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip()[0].isdigit()


def test_make_test_fast_deselects_every_mark_that_runs_more_than_units():
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    assert 'UNIT_TESTS := not slow and not workflow and not service and not network' in makefile
    assert '-m "$(UNIT_TESTS)"' in makefile.split("test-fast:")[1].split("\n\n")[0]


class FakeItem:
    """What the ordering reads of a collected test: its node id and marks."""

    def __init__(self, nodeid: str, *marks: str):
        self.nodeid, self.marks, self.keywords = nodeid, [getattr(pytest.mark, m).mark for m in marks], {}

    def iter_markers(self):
        return iter(self.marks)


def test_make_test_starts_slow_then_service_then_workflow_modules_and_keeps_file_order_within():
    items = [FakeItem("tests/test_a.py::test_unit"), FakeItem("tests/test_b.py::test_dry_run", "workflow"),
             FakeItem("tests/test_b.py::test_unit"), FakeItem("tests/test_c.py::test_browser", "service"),
             FakeItem("tests/test_d.py::test_cluster", "slow", "service", "workflow"), FakeItem("tests/test_e.py::test_unit")]  # fmt: skip
    pytest_collection_modifyitems(None, items)
    assert [item.nodeid for item in items] == [
        "tests/test_d.py::test_cluster", "tests/test_c.py::test_browser", "tests/test_b.py::test_dry_run",
        "tests/test_b.py::test_unit", "tests/test_a.py::test_unit", "tests/test_e.py::test_unit"]  # fmt: skip
