"""The invariance audit (python -m prdnet.audit) on real embedded crystals, float64."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from model_data import torch_single_thread  # noqa: F401
from prdnet.audit import (
    MIRROR,
    TOLERANCE,
    TRANSFORMS,
    embedded_data_path,
    format_table,
    main,
    run_audit,
    sample_structures,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def structures():
    return [structure for _, structure, _ in sample_structures(embedded_data_path(), 4, 12)]


@pytest.fixture(scope="module")
def rows(structures):
    return run_audit(structures)


def _rows(rows, diffraction):
    selected = [row for row in rows if row.diffraction == diffraction]
    assert {row.model for row in selected} == {"cgcnn", "prdnet"}
    return selected


def test_every_audited_copy_describes_the_same_crystal(structures):
    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=True)
    rng = np.random.default_rng(0)
    for structure in structures:
        mirror = Structure(structure.lattice.matrix @ MIRROR.T, structure.species, structure.frac_coords)
        for name, transform in TRANSFORMS.items():
            copy = transform(structure, rng)
            assert np.all((copy.frac_coords >= 0) & (copy.frac_coords < 1))
            reference = mirror if name == "reflection" else structure
            assert matcher.fit(reference, copy), f"{name} copy is not the same crystal"


def test_backbones_without_diffraction_are_invariant_to_every_transform(rows):
    for row in _rows(rows, None):
        assert row.changes.keys() == TRANSFORMS.keys()
        assert row.worst <= TOLERANCE, f"{row.model}: {row.changes}"


def test_invariant_diffraction_mode_is_invariant_to_every_transform(rows):
    for row in _rows(rows, "invariant"):
        assert row.worst <= TOLERANCE, f"{row.model}+invariant: {row.changes}"


def test_audited_models_tell_the_crystals_apart(rows):
    assert all(row.spread > 1e3 * TOLERANCE for row in rows)


def test_table_lists_paper_mode_rows_with_their_failures(rows):
    table = format_table(rows)
    for row in _rows(rows, "paper"):
        assert row.changes["origin shift"] > TOLERANCE  # the audit sees a non-invariant model
        line = next(line for line in table.splitlines() if line.startswith(f"| {row.model} | paper |"))
        assert "no: " in line and "origin shift" in line


def test_audit_command_prints_a_markdown_row_per_model_and_diffraction_mode(capsys):
    main(["--n-crystals", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 6
    assert all(transform in lines[0] for transform in TRANSFORMS)
