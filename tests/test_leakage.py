"""Leakage audit of every split (issue 22): duplicates, polymorphs and prototypes a val/test crystal
shares with its fold's training part, and what ``leakage: drop`` and ``group`` do about them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from prdnet.data.crystal_groups import anonymous_formula, crystal_groups, crystal_system
from prdnet.data.leakage import audit_splits, drop_duplicates
from prdnet.data.split_step import split_dataset
from prdnet.data.splits import grouped_random_split
from prdnet.data.tables import CrystalColumns, crystals_table


def rock_salt(a: float, cation: str = "Na", anion: str = "Cl") -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def caesium_chloride(a: float, cation: str = "Cs", anion: str = "Cl") -> Structure:
    return Structure(Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rutile(a: float = 4.59, c: float = 2.96) -> Structure:
    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(a, c), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])


def rotated(structure: Structure, seed: int) -> Structure:
    matrix = Rotation.random(random_state=seed).as_matrix()
    return Structure(Lattice(structure.lattice.matrix @ matrix.T), structure.species, structure.frac_coords)


def shifted(structure: Structure, shift: tuple[float, float, float]) -> Structure:
    return Structure(structure.lattice, structure.species, (structure.frac_coords + np.asarray(shift)) % 1.0)


def columns(structures: dict[str, Structure], target: list[float] | None = None) -> CrystalColumns:
    ids = list(structures)
    return CrystalColumns(
        ids=ids,
        atom_counts=np.array([len(s) for s in structures.values()]),
        atomic_numbers=np.concatenate([s.atomic_numbers for s in structures.values()]).astype(np.int64),
        frac_coords=np.concatenate([s.frac_coords for s in structures.values()]),
        lattices=np.stack([s.lattice.matrix for s in structures.values()]),
        targets={"e": np.asarray(target if target is not None else np.arange(len(ids)), dtype=np.float64)},
    )


@pytest.fixture(scope="module")
def planted():
    """Three training crystals and, in the test part, a copy of each under another description
    (rotated, as a 2x1x1 supercell, with its origin shifted), a polymorph and a same-prototype crystal."""
    structures = {
        "nacl": rock_salt(5.64),
        "cscl": caesium_chloride(4.12),
        "tio2": rutile(),
        "nacl-rotated": rotated(rock_salt(5.64), seed=3),
        "cscl-supercell": caesium_chloride(4.12).make_supercell([2, 1, 1], in_place=False),
        "tio2-shifted": shifted(rutile(), (0.13, 0.41, 0.27)),
        "nacl-as-cscl": caesium_chloride(3.3, "Na", "Cl"),  # NaCl in the CsCl structure: a polymorph of nacl
        "mgo": rock_salt(4.21, "Mg", "O"),  # rock salt with other elements: nacl's prototype
        "si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),  # shares nothing
    }
    crystals = columns(structures)
    groups = crystal_groups(crystals)
    split = {"e": {"fold0": {"train": ["nacl", "cscl", "tio2"], "val": [],
                             "test": ["nacl-rotated", "cscl-supercell", "tio2-shifted", "nacl-as-cscl", "mgo", "si"]}}}  # fmt: skip
    return crystals, groups, split


def test_a_rotated_a_supercell_and_an_origin_shifted_copy_are_each_found_as_duplicates(planted):
    _, groups, split = planted
    counts, pairs = audit_splits(split, groups)
    duplicates = {(crystal, partner) for _, _, _, crystal, kind, partner in pairs if kind == "duplicate"}
    assert duplicates == {("nacl-rotated", "nacl"), ("cscl-supercell", "cscl"), ("tio2-shifted", "tio2")}
    assert counts["e"]["fold0"]["test"]["duplicate"] == 3


def test_a_polymorph_shares_the_formula_only_and_a_prototype_the_structure_type_only(planted):
    _, groups, split = planted
    counts, pairs = audit_splits(split, groups)
    found = {(crystal, kind, partner) for _, _, _, crystal, kind, partner in pairs}
    assert ("nacl-as-cscl", "polymorph", "nacl") in found and ("nacl-as-cscl", "prototype", "cscl") in found
    assert ("mgo", "prototype", "nacl") in found and not any(c == "mgo" and k != "prototype" for c, k, _ in found)
    assert not any(crystal == "si" for crystal, _, _ in found)
    assert counts["e"]["fold0"]["test"] == {"size": 6, "duplicate": 3, "polymorph": 1, "prototype": 5}


def test_the_group_table_names_formula_system_symmetry_and_prototype(planted):
    _, groups, _ = planted
    rows = {row["id"]: row for row in groups.to_pylist()}
    assert rows["nacl"]["reduced_formula"] == "NaCl" and rows["nacl"]["chemical_system"] == "Cl-Na"
    assert rows["nacl"]["spacegroup"] == 225 and rows["nacl"]["crystal_system"] == "cubic"
    assert rows["tio2"]["spacegroup"] == 136 and rows["tio2"]["crystal_system"] == "tetragonal"
    assert rows["nacl"]["prototype"] == rows["mgo"]["prototype"] == "AB_225_a_b"
    assert rows["cscl-supercell"]["prototype"] == rows["cscl"]["prototype"] != rows["nacl"]["prototype"]
    assert rows["nacl-rotated"]["duplicate_cluster"] == rows["nacl"]["duplicate_cluster"] == "nacl"
    assert rows["nacl-as-cscl"]["duplicate_cluster"] == "nacl-as-cscl"


def test_crystal_system_and_anonymous_formula_follow_their_definitions():
    assert [crystal_system(n) for n in (1, 2, 3, 15, 16, 74, 75, 142, 143, 167, 168, 194, 195, 230)] == [
        "triclinic", "triclinic", "monoclinic", "monoclinic", "orthorhombic", "orthorhombic", "tetragonal",
        "tetragonal", "trigonal", "trigonal", "hexagonal", "hexagonal", "cubic", "cubic"]  # fmt: skip
    assert anonymous_formula([4, 6]) == "A2B3" and anonymous_formula([1, 3, 1]) == "ABC3"


def test_drop_takes_duplicates_out_of_the_test_part_and_says_which_training_crystal(planted):
    _, groups, split = planted
    kept, dropped = drop_duplicates(split, groups)
    assert kept["e"]["fold0"]["test"] == ["nacl-as-cscl", "mgo", "si"]
    assert {(row[3], row[4]) for row in dropped} == {
        ("nacl-rotated", "duplicates training crystal nacl (leakage: drop)"),
        ("cscl-supercell", "duplicates training crystal cscl (leakage: drop)"),
        ("tio2-shifted", "duplicates training crystal tio2 (leakage: drop)"),
    }


def test_a_grouped_split_keeps_each_duplicate_cluster_in_one_part():
    ids = [f"c{i:03d}" for i in range(200)]
    cluster_of = {i: f"k{int(i[1:]) // 4}" for i in ids}  # 50 clusters of 4 copies
    parts = grouped_random_split(ids, cluster_of, (0.8, 0.1, 0.1), seed=1)
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == ids
    where = {i: name for name, members in parts.items() for i in members}
    assert all(len({where[i] for i in ids if cluster_of[i] == k}) == 1 for k in set(cluster_of.values()))
    assert len(parts["test"]) == 20 and len(parts["val"]) == 20


def test_the_split_step_writes_leakage_json_pairs_and_dropped_rows(planted, tmp_path):
    crystals, groups, _ = planted
    pq.write_table(crystals_table(crystals), tmp_path / "structures.parquet")
    pq.write_table(groups, tmp_path / "crystal_groups.parquet")
    folds = {"fold0": ["nacl-rotated", "cscl-supercell", "tio2-shifted", "nacl-as-cscl", "mgo", "si"]}
    split_dataset(tmp_path / "structures.parquet", folds, tmp_path / "crystal_groups.parquet",
                  {"kind": "id_lists", "test": ["x"], "val_fraction": 0.01, "seed": 0}, "drop", tmp_path / "splits")  # fmt: skip
    audit = json.loads((tmp_path / "splits" / "leakage.json").read_text())
    assert audit["action"] == "drop" and audit["splits"]["e"]["fold0"]["test"]["duplicate"] == 0
    dropped = list(csv.DictReader(open(tmp_path / "splits" / "leakage_dropped.csv")))
    assert sorted(row["id"] for row in dropped) == ["cscl-supercell", "nacl-rotated", "tio2-shifted"]
    summary = json.loads((tmp_path / "splits" / "summary.json").read_text())
    assert summary["e"]["fold0"]["test"] == 3 and summary["e"]["fold0"]["dropped_as_duplicates"] == 3
    pairs = list(csv.DictReader(open(tmp_path / "splits" / "leakage_pairs.csv")))
    assert {"task", "fold", "part", "id", "kind", "train_id"} == set(pairs[0])


def test_a_job_records_the_leakage_counts_of_its_own_task_and_fold(tmp_path):
    from prdnet.training.outputs import split_leakage

    audit = {"action": "drop", "splits": {"e": {"fold0": {"val": {"size": 2, "duplicate": 0, "polymorph": 0, "prototype": 1},
                                                          "test": {"size": 3, "duplicate": 0, "polymorph": 1, "prototype": 2}},
                                                "fold1": {"val": {}, "test": {}}}}}  # fmt: skip
    (tmp_path / "splits" / "e" / "fold0").mkdir(parents=True)
    (tmp_path / "splits" / "leakage.json").write_text(json.dumps(audit))
    recorded = split_leakage(tmp_path / "splits" / "e" / "fold0")
    assert recorded == {"leakage": {"action": "drop", **audit["splits"]["e"]["fold0"]}}
    assert split_leakage(tmp_path / "elsewhere" / "e" / "fold0") == {}  # splits made before the audit
