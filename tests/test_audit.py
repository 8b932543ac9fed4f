"""The invariance audit (python -m prdnet.audit) on real embedded crystals, float64, each model on
the graphs of its own recipe as the shards hold them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from model_data import torch_single_thread  # noqa: F401
from prdnet.audit import (
    MIRROR,
    PROMISED,
    REPORTED,
    TOLERANCE,
    TRANSFORMS,
    audited_models,
    embedded_data_path,
    format_table,
    is_oblique,
    main,
    model_inputs,
    run_audit,
    sample_audit_structures,
)
from prdnet.data.loader import load_graph_data
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import featurize_dataset
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.io import write_parquet
from prdnet.models.registry import BACKBONES, load_presets

pytestmark = pytest.mark.usefixtures("torch_single_thread")

AUDIT_BUCKETS = ((1, 4), (5, 12), (13, 30), (31, 48))
"""Sizes the test draws (one right-angled and one oblique cell each): up to 48 atoms, 96 in the supercell."""


@pytest.fixture(scope="module")
def crystals():
    return sample_audit_structures(embedded_data_path(), per_kind=1, buckets=AUDIT_BUCKETS)


@pytest.fixture(scope="module")
def structures(crystals):
    return [structure for _, structure, _ in crystals]


def small_preset_models() -> list[str]:
    """Every registry backbone at its ``small`` preset (the larger extra presets are audited apart)."""
    return [label for label, spec in audited_models("small").items() if spec["preset"] == "small"]


@pytest.fixture(scope="module")
def rows(structures):
    return run_audit(structures, models=small_preset_models())


def test_audited_models_are_every_registry_backbone_each_on_a_canonical_cell_recipe():
    presets = load_presets()
    specs = audited_models("small", presets)
    assert {spec["name"] for spec in specs.values()} == set(BACKBONES)
    for spec in specs.values():
        assert graph_recipe_for(spec, presets).cell == "canonical"


def test_crystals_span_sizes_and_cell_shapes(crystals):
    sizes = [len(structure) for _, structure, _ in crystals]
    for low, high in AUDIT_BUCKETS:
        assert any(low <= size <= high for size in sizes), f"no crystal with {low}-{high} atoms"
    assert max(sizes) > 30
    shapes = [is_oblique(structure) for _, structure, _ in crystals]
    assert any(shapes) and not all(shapes)


def test_every_audited_copy_describes_the_same_crystal(structures):
    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=True)
    rng = np.random.default_rng(0)
    for structure in structures:
        mirror = Structure(structure.lattice.matrix @ MIRROR.T, structure.species, structure.frac_coords)
        for name, transform in TRANSFORMS.items():
            copy_ = transform(structure, rng)
            assert np.all((copy_.frac_coords >= 0) & (copy_.frac_coords < 1))
            reference = mirror if name == "reflection" else structure
            assert matcher.fit(reference, copy_), f"{name} copy is not the same crystal"
        left = TRANSFORMS["left-handed cell"](structure, rng)
        assert np.linalg.det(left.lattice.matrix) < 0 < np.linalg.det(structure.lattice.matrix)


def test_audit_inputs_are_the_shards_own_graphs(tmp_path, mp_embedded_path):
    """The audit's batch of a crystal equals what the featurizer writes for it, for every recipe."""
    entries, _, _ = collect_entries(read_mp_embedded(mp_embedded_path, limit=12), ["formation_energy"], ValidationRules())
    columns = entries_to_columns(entries, ["formation_energy"])
    write_parquet(tmp_path / "structures.parquet", crystals_table(columns))
    presets = load_presets()
    recipes = {graph_recipe_for(spec, presets) for spec in audited_models("small", presets).values()}
    structures = [entry.structure for entry in entries]
    for index, recipe in enumerate(sorted(recipes, key=lambda r: r.digest())):
        manifest = featurize_dataset(tmp_path / "structures.parquet", tmp_path / str(index), recipe, n_shards=1)
        stored = load_graph_data([tmp_path / str(index) / manifest["shards"][0]], ids=[e.id for e in entries], dtype=torch.float64)
        audited = model_inputs(structures, recipe).to_data_list()
        for shard_item, audit_item in zip(stored, audited):
            for key in ("atomic_numbers", "frac_coords", "lattice", "edge_index", "edge_offset", "edge_distance"):
                assert torch.equal(shard_item[key], audit_item[key]), f"{recipe}: {key} of {shard_item.material_id}"


def test_promised_rows_hold_for_every_model_and_diffraction_mode(rows):
    """Rotation, permutation, basis change and a left-handed cell change no prediction (canonical cell)."""
    assert {row.model for row in rows} == set(small_preset_models())
    assert {audited_models()[row.model]["name"] for row in rows} == set(BACKBONES)
    assert {row.diffraction for row in rows} == {None, "paper", "invariant"}
    for row in rows:
        assert row.changes.keys() == TRANSFORMS.keys()
        assert row.failing(PROMISED) == [], f"{row.model}+{row.diffraction}: {row.changes}"


def test_extra_presets_hold_the_promised_rows_too(structures):
    """PRDNet's ``reference`` preset (the released code, at its published size), on the smaller crystals."""
    extra = [label for label, spec in audited_models("small").items() if spec["preset"] != "small"]
    assert extra, "no model has an extra preset"
    smaller = [structure for structure in structures if len(structure) <= 4]
    for row in run_audit(smaller, models=extra, diffraction_modes=[None, "paper"]):
        assert row.failing(PROMISED) == [], f"{row.model}+{row.diffraction}: {row.changes}"


def test_paper_diffraction_is_seen_to_depend_on_the_origin(rows):
    """The audit can fail: the paper's plug-in reads absolute positions, which an origin shift moves."""
    for row in rows:
        if row.diffraction == "paper":
            assert row.changes["origin shift"] > 1e3 * TOLERANCE, f"{row.model}: {row.changes}"


def test_a_stored_cell_recipe_shows_the_basis_dependence_the_canonical_cell_removes(structures):
    """Matformer's lattice self-edges read the cell: with the stored cell, a basis change changes them."""
    presets = copy.deepcopy(load_presets())
    recipe = presets["models"]["matformer"]["small"].get("graph", "default")
    presets["graphs"][recipe] = {**presets["graphs"][recipe], "cell": "stored"}
    (row,) = run_audit(structures[:4], models=["matformer"], diffraction_modes=[None], presets=presets)
    assert row.recipe.cell == "stored" and row.recipe.lattice_self_edges > 0
    assert row.changes["basis change"] > 1e3 * TOLERANCE


def test_audited_models_tell_the_crystals_apart(rows):
    assert all(row.spread > 1e4 * TOLERANCE for row in rows)


def test_table_has_a_row_per_model_and_mode_and_reports_every_transform(rows):
    table = format_table(rows)
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(rows)
    assert all(name in lines[0] for name in (*PROMISED, *REPORTED))
    assert all(line.endswith("| yes |") for line in lines[1:])


def test_audit_command_prints_the_table(capsys):
    main(["--models", "cgcnn", "--max-atoms", "12"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 3
    assert all(transform in lines[0] for transform in TRANSFORMS)
