"""The invariance audit (python -m prdnet.audit) on real embedded crystals, float64."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from model_data import torch_single_thread  # noqa: F401
from prdnet.audit import (
    BASIS_DEPENDENT,
    MIRROR,
    MODELS,
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


INVARIANT_BY_CONSTRUCTION = {"cgcnn", "schnet", "megnet", "alignn", "matformer (no lattice edges)", "prdnet"}
"""Backbones that see only distances and bond angles (prdnet/audit.py's docstring)."""
BASIS_READING = {"basis change", "supercell 2×1×1"}
"""What a model that reads the stored cell vectors is always seen to fail."""


def _rows(rows, diffraction):
    selected = [row for row in rows if row.diffraction == diffraction]
    assert {row.model for row in selected} == set(MODELS)
    return selected


def test_every_audited_model_is_either_invariant_by_construction_or_listed_as_basis_dependent():
    assert set(MODELS) == INVARIANT_BY_CONSTRUCTION | set(BASIS_DEPENDENT)
    assert not INVARIANT_BY_CONSTRUCTION & set(BASIS_DEPENDENT)


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


@pytest.mark.parametrize("diffraction", [None, "invariant"])
def test_invariant_backbones_are_invariant_to_every_transform_alone_and_with_invariant_diffraction(rows, diffraction):
    for row in _rows(rows, diffraction):
        assert row.changes.keys() == TRANSFORMS.keys()
        if row.model in INVARIANT_BY_CONSTRUCTION:
            assert row.worst <= TOLERANCE, f"{row.model}+{diffraction}: {row.changes}"


@pytest.mark.parametrize("diffraction", [None, "invariant"])
def test_basis_dependent_backbones_fail_only_what_reads_the_cell_basis(rows, diffraction):
    for row in _rows(rows, diffraction):
        if row.model not in BASIS_DEPENDENT:
            continue
        may_fail = set(BASIS_DEPENDENT[row.model])
        assert BASIS_READING <= may_fail
        for name, change in row.changes.items():
            if name in BASIS_READING:
                assert change > TOLERANCE, f"{row.model}+{diffraction}: the audit misses its {name} dependence"
            elif name not in may_fail:
                assert change <= TOLERANCE, f"{row.model}+{diffraction}: {name} changes by {change:.1e}"


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
    assert len(lines) == 1 + 3 * len(MODELS)
    assert all(transform in lines[0] for transform in TRANSFORMS)
