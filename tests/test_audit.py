"""The invariance audit (python -m prdnet.audit) on real embedded crystals, pseudo-symmetric cells
included, float64, each model on the graphs of its own recipe as the shards hold them: every
change beyond 1e-9 is one the recipe or plug-in allows by design, and the table says so."""

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
    PSEUDO_SYMMETRIC_IDS,
    REASONS,
    REPORTED,
    TOLERANCE,
    TRANSFORMS,
    audit_crystals,
    audited_models,
    design_reasons,
    embedded_data_path,
    footnote_labels,
    format_table,
    is_oblique,
    main,
    model_inputs,
    rebased,
    run_audit,
)
from prdnet.geometry import edge_vectors
from prdnet.data.cell import equivalent_niggli_transforms, metric_key, niggli_basis
from prdnet.data.graphs import GraphParams
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
"""Sizes the test draws (one right-angled and one oblique cell each): up to 48 atoms, 96 in the
supercell; the pseudo-symmetric crystals (10–14 atoms) come on top."""


@pytest.fixture(scope="module")
def crystals():
    return audit_crystals(embedded_data_path(), per_kind=1, buckets=AUDIT_BUCKETS)


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
    for label in small_preset_models():
        assert graph_recipe_for(specs[label], presets).cell == "canonical"


def test_prdnet_reference_and_every_other_non_size_preset_are_audited():
    presets = load_presets()
    specs = audited_models("small", presets)
    assert specs["prdnet (reference)"] == {"name": "prdnet", "preset": "reference"}
    for name, available in presets["models"].items():
        for preset in available:
            if preset not in ("small", "paper"):
                assert f"{name} ({preset})" in specs


def test_crystals_span_sizes_and_cell_shapes(crystals):
    sizes = [len(structure) for _, structure, _ in crystals]
    for low, high in AUDIT_BUCKETS:
        assert any(low <= size <= high for size in sizes), f"no crystal with {low}-{high} atoms"
    assert max(sizes) > 30
    shapes = [is_oblique(structure) for _, structure, _ in crystals]
    assert any(shapes) and not all(shapes)


def test_the_pseudo_symmetric_crystals_are_audited_and_are_pseudo_symmetric(crystals):
    """Each has Niggli bases whose metrics differ by 1e-8 to 1e-4 Å²: not a symmetry, but within the
    reduction's tolerance, so which one it returns depends on the input cell."""
    ids = [material_id for material_id, _, _ in crystals]
    assert set(PSEUDO_SYMMETRIC_IDS) <= set(ids) and "mp-676154" in ids
    for material_id, structure, _ in crystals:
        if material_id in PSEUDO_SYMMETRIC_IDS:
            basis = niggli_basis(structure.lattice.matrix)
            keys = metric_key(equivalent_niggli_transforms(basis, GraphParams().tie_tolerance) @ basis)
            assert 1e-8 < np.ptp(keys, axis=0).max() < 1e-4, material_id


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


def test_every_change_beyond_the_tolerance_is_by_design(rows):
    """Every model and diffraction mode keeps its prediction to 1e-9 under every transform, pseudo-symmetric
    crystals included, except where its recipe or plug-in is not built to (design_reasons)."""
    assert TOLERANCE == 1e-9
    assert {row.model for row in rows} == set(small_preset_models())
    assert {audited_models()[row.model]["name"] for row in rows} == set(BACKBONES)
    assert {row.diffraction for row in rows} == {None, "paper", "invariant"}
    for row in rows:
        assert row.changes.keys() == TRANSFORMS.keys()
        assert row.failing() == [], f"{row.model}+{row.diffraction}: {row.changes}"


def test_rotation_basis_change_left_handed_and_permutation_hold_on_every_canonical_cell_graph(rows):
    """No reason can excuse these on a canonical-cell recipe with a tie tolerance, whatever the mode."""
    for row in rows:
        assert row.recipe.cell == "canonical" and row.recipe.tie_tolerance > 0
        assert not set(PROMISED) & set(row.by_design), f"{row.model}+{row.diffraction}: {row.by_design}"
        assert max(row.changes[name] for name in PROMISED) <= TOLERANCE, f"{row.model}+{row.diffraction}"


def test_by_design_changes_are_marked_in_the_table_with_their_reason(rows):
    table = format_table(rows)
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    labels = footnote_labels(rows)
    assert labels, "nothing changed by design: the audit shows no supercell or origin dependence"
    for row, line in zip(rows, lines[1:]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for name in row.failing_by_design():
            mark = "[" + ",".join(labels[key] for key in row.by_design[name]) + "]"
            cell = cells[header.index(name)]
            assert cell.endswith(mark), (row.model, row.diffraction, name, cell)
        assert cells[header.index("changed by design")] == (", ".join(row.failing_by_design()) or "none")
    for key, label in labels.items():
        assert f"- [{label}] by design: {REASONS[key]}." in table
    # what is expected to change by design does, and is marked: lattice self-edges under a supercell,
    # the paper's plug-in under an origin shift
    matformer = next(row for row in rows if row.model == "matformer" and row.diffraction is None)
    assert matformer.failing_by_design() == ["supercell 2×1×1"]
    assert matformer.by_design["supercell 2×1×1"] == ("self-edges",)
    for row in rows:
        if row.diffraction == "paper":
            assert "origin shift" in row.failing_by_design()


def test_design_reasons_come_from_the_recipe_fields_and_the_mode():
    canonical = GraphParams()
    assert design_reasons(canonical, None) == {} == design_reasons(canonical, "invariant")
    assert design_reasons(GraphParams(lattice_self_edges=12), None) == {"supercell 2×1×1": ("self-edges",)}
    stored = design_reasons(GraphParams(cell="stored"), None)
    assert set(stored) == {"basis change", "left-handed cell", "supercell 2×1×1"}
    ties = design_reasons(GraphParams(tie_tolerance=0.0), None)
    assert set(ties) == set(TRANSFORMS) - {"permutation"}
    paper = design_reasons(canonical, "paper")
    assert set(paper) == {"origin shift", "reflection", "supercell 2×1×1"}
    assert "paper cell" in design_reasons(GraphParams(cell="stored"), "paper")["basis change"]
    reader = design_reasons(canonical, None, reads_cell=True)
    assert reader == {"reflection": ("reads cell",), "supercell 2×1×1": ("reads cell",)}


def test_reading_the_cell_is_measured_on_the_same_edges_in_another_basis(structures, rows):
    """rebased keeps every edge vector; the models that read the cell's vectors are those that can tell
    (iComFormer's lattice frame, the paper's hkl), not those that see the crystal through its edges."""
    batch = model_inputs(structures[:4], graph_recipe_for(audited_models()["matformer"], load_presets()))
    other = rebased(batch)
    assert not torch.equal(other.lattice, batch.lattice)
    before = edge_vectors(batch.frac_coords, batch.lattice, batch.edge_index, batch.edge_offset, batch.batch)
    after = edge_vectors(other.frac_coords, other.lattice, other.edge_index, other.edge_offset, other.batch)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-12)
    reads = {(row.model, row.diffraction): row.reads_cell for row in rows}
    assert all(reads[(model, "paper")] for model, _ in reads)
    assert reads[("icomformer", None)] and not reads[("cgcnn", None)] and not reads[("matformer", None)]


def test_extra_presets_change_only_by_design_too(crystals):
    """PRDNet's ``reference`` preset (the released code, at its published size) and any other non-size
    preset, on the smallest crystals and a pseudo-symmetric one; a canonical-cell preset keeps rotation,
    basis change, left-handed cell and permutation to 1e-9."""
    extra = [label for label, spec in audited_models("small").items() if spec["preset"] != "small"]
    assert "prdnet (reference)" in extra
    chosen = [s for _, s, _ in crystals if len(s) <= 4] + [s for i, s, _ in crystals if i == PSEUDO_SYMMETRIC_IDS[0]]
    assert len(chosen) >= 3
    rows = run_audit(chosen, models=extra, diffraction_modes=[None, "paper"])
    for row in rows:
        assert row.failing() == [], f"{row.model}+{row.diffraction}: {row.changes}"
        if row.recipe.cell == "canonical" and row.recipe.tie_tolerance > 0:
            assert max(row.changes[name] for name in PROMISED) <= TOLERANCE, f"{row.model}+{row.diffraction}"
    assert format_table(rows).count("| yes |") == len(rows)


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
    assert "basis change" in row.failing_by_design() and row.failing() == []
    header, _, line = (line.strip("|").split("|") for line in format_table([row]).splitlines()[:3])
    assert line[[cell.strip() for cell in header].index("basis change")].strip().endswith("]")  # its footnote


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
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 3
    assert all(transform in lines[0] for transform in TRANSFORMS)
    assert "mp-1167 (10 atoms, oblique, pseudo-symmetric)" in out  # the pseudo-symmetric crystals that fit
