"""Shared fixtures: paths to the embedded data and small hand-made crystals."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PRDNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
MP_EMBEDDED = SHARED_DATA / "mp" / "mp_2018_cgcnn36k.jsonl.gz"
MATMINER_DATA = SHARED_DATA / "matminer"


# Modules in this order: `make test` runs them on TEST_WORKERS workers (pytest-xdist, --dist
# loadscope: a module runs whole on one worker, so its module-scoped workflow run or service starts
# once), and the longest must start first for the workers to finish together. Within a rank, file order.
FIRST = ("slow", "service", "workflow")


def module_rank(item: pytest.Item) -> int:
    """0 for a slow test, 1 for a service, 2 for a workflow run, 3 for a unit test."""
    names = {mark.name for mark in item.iter_markers()}
    return next((rank for rank, name in enumerate(FIRST) if name in names), len(FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The most expensive modules first; tests marked ``network`` run only with PRDNET_NETWORK_TESTS=1."""
    ranks: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        ranks[module] = min(ranks.get(module, len(FIRST)), module_rank(item))
    items.sort(key=lambda item: ranks[item.nodeid.split("::")[0]])  # stable: file order within a rank
    if os.environ.get("PRDNET_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs the network; run with PRDNET_NETWORK_TESTS=1")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


# --- The marks say what a test starts ------------------------------------------------------
# `make test-fast` deselects `workflow` and `service`: a test that starts Snakemake, a `prdnet` or
# `torchrun` process, or a real service without its mark would slip into the unit loop. Every
# process a test starts passes through the audit hook below, which fails the test lacking the mark.
WORKFLOW_PROGRAMS = {"snakemake", "prdnet", "torchrun"}
WORKFLOW_MODULES = {"prdnet.cli", "torch.distributed.run"}
SERVICE_PROGRAMS = {"chromium", "chromium-browser", "google-chrome", "mlflow", "munged", "slurmctld", "slurmd",
                    "sbatch", "squeue", "scontrol", "srun", "runuser"}  # fmt: skip  (runuser: PostgreSQL's tools)
SERVICE_MODULES = {"mlflow"}
RUNNING_MARKS: set[str] | None = None  # the marks of the test being set up, run or torn down


def mark_needed(args: str | bytes | Sequence) -> tuple[str, str] | None:
    """(mark, program) that a command line needs, or None for any other program."""
    words = [os.fsdecode(word) for word in (args.split() if isinstance(args, (str, bytes)) else args)]
    if not words:
        return None
    program = os.path.basename(words[0])
    module = words[words.index("-m") + 1] if "-m" in words[:-1] else None
    if program in WORKFLOW_PROGRAMS or module in WORKFLOW_MODULES:
        return "workflow", module or program
    if program in SERVICE_PROGRAMS or module in SERVICE_MODULES:
        return "service", module or program
    return None


def check_process_marks(event: str, args: tuple) -> None:
    if event != "subprocess.Popen" or RUNNING_MARKS is None:
        return
    needed = mark_needed(args[1])
    if needed is not None and needed[0] not in RUNNING_MARKS:
        mark, program = needed
        raise AssertionError(f"this test starts `{program}` but is not marked `{mark}`: add `pytest.mark.{mark}` "
                             f"(`make test-fast` deselects it; README, Tests)")  # fmt: skip


sys.addaudithook(check_process_marks)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Record the test's marks before its fixtures start anything; module fixtures are torn down
    in the teardown of their module's last test, so the marks stay set until the next setup."""
    global RUNNING_MARKS
    RUNNING_MARKS = {mark.name for mark in item.iter_markers()}


@pytest.fixture(scope="session", autouse=True)
def torch_one_thread_per_worker() -> None:
    """Under pytest-xdist each worker is one process: torch on one thread there, as the training
    jobs run (OMP_NUM_THREADS=threads), instead of every worker's threads fighting over the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mp_embedded_path() -> Path:
    if not MP_EMBEDDED.exists():
        pytest.fail(f"embedded MP data missing at {MP_EMBEDDED} (set PRDNET_SHARED_DATA)")
    return MP_EMBEDDED


@pytest.fixture(scope="session")
def matminer_data() -> Path:
    if not (MATMINER_DATA / "matbench_jdft2d.json.gz").exists():
        pytest.fail(f"MatBench data missing at {MATMINER_DATA} (set PRDNET_SHARED_DATA)")
    return MATMINER_DATA


@pytest.fixture
def rock_salt() -> Structure:
    """Conventional cubic NaCl, a = 5.64 Å (8 atoms)."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def bcc_iron() -> Structure:
    """Conventional bcc Fe, a = 2.87 Å (2 atoms)."""
    return Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def random_rotation(seed: int) -> np.ndarray:
    """A proper rotation matrix from a seeded QR decomposition."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q
