"""Shared fixtures: paths to the embedded data and small hand-made crystals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PRDNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
MP_EMBEDDED = SHARED_DATA / "mp" / "mp_2018_cgcnn36k.jsonl.gz"
MATMINER_DATA = SHARED_DATA / "matminer"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``network`` run only with PRDNET_NETWORK_TESTS=1."""
    if os.environ.get("PRDNET_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs the network; run with PRDNET_NETWORK_TESTS=1")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


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
