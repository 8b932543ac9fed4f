"""Out-of-distribution split kinds (issue 22): which crystals land in which fold, on a known small
dataset, and the start-up errors of a cluster rule that cannot work."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prdnet.config import ConfigError, dataset_folds, validate_config
from prdnet.data.splits import EmptyFoldError, make_splits
from tiny_workflow import MP, write_tiny_config

ROOT = Path(__file__).resolve().parent.parent


def row(elements, crystal_system="cubic", spacegroup=225, prototype="AB_225_a_b", formula=None):
    return {"elements": sorted(elements), "chemical_system": "-".join(sorted(elements)), "crystal_system": crystal_system,
            "spacegroup": spacegroup, "prototype": prototype, "reduced_formula": formula or "".join(sorted(elements)),
            "duplicate_cluster": None}  # fmt: skip


# twelve crystals with known clusters
GROUPS = {
    "a1": row(["Na", "Cl"]), "a2": row(["K", "Cl"]), "a3": row(["Mg", "O"]), "a4": row(["Fe", "O"], "trigonal", 167, "A2B3_167_c_e"),
    "a5": row(["Al", "O"], "trigonal", 167, "A2B3_167_c_e"), "a6": row(["Si", "O"], "hexagonal", 180, "AB2_180_c_i"),
    "a7": row(["Ti", "O"], "tetragonal", 136, "AB2_136_a_f"), "a8": row(["Sn", "O"], "tetragonal", 136, "AB2_136_a_f"),
    "a9": row(["Cs", "Cl"], "cubic", 221, "AB_221_a_b"), "a10": row(["Fe", "Ni"], "cubic", 221, "AB_221_a_b"),
    "a11": row(["Fe", "O"], "cubic", 225, "AB_225_a_b"), "a12": row(["Cu"], "cubic", 225, "A_225_a"),
}  # fmt: skip
for crystal_id, group_row in GROUPS.items():
    group_row["duplicate_cluster"] = crystal_id
IDS = list(GROUPS)
TARGETS = {"e": np.arange(12, dtype=float)}


def split(options, groups=GROUPS, targets=TARGETS, leakage="report"):
    return make_splits(IDS, targets, {"val_fraction": 0.2, "seed": 0, **options}, {}, None, groups, leakage)


def test_holding_out_an_element_puts_every_crystal_with_it_in_test_and_none_in_train():
    splits, summary = split({"kind": "leave_cluster_out", "by": "element", "holdout": ["Cl", "Fe"]})
    cl, fe = splits["e"]["fold0"], splits["e"]["fold1"]
    assert sorted(cl["test"]) == ["a1", "a2", "a9"] and sorted(fe["test"]) == ["a10", "a11", "a4"]
    assert sorted(cl["train"] + cl["val"]) == sorted(set(IDS) - {"a1", "a2", "a9"})
    assert summary["e"]["fold0"]["cluster"] == "Cl" and summary["e"]["fold1"]["cluster"] == "Fe"


def test_holding_out_a_crystal_system_a_chemical_system_and_a_space_group():
    splits, _ = split({"kind": "leave_cluster_out", "by": "crystal_system", "holdout": ["trigonal", "tetragonal"]})
    assert sorted(splits["e"]["fold0"]["test"]) == ["a4", "a5"] and sorted(splits["e"]["fold1"]["test"]) == ["a7", "a8"]
    splits, _ = split({"kind": "leave_cluster_out", "by": "chemical_system", "holdout": ["Fe-O"]})
    assert sorted(splits["e"]["fold0"]["test"]) == ["a11", "a4"]
    splits, _ = split({"kind": "leave_cluster_out", "by": "spacegroup", "holdout": [221]})
    assert sorted(splits["e"]["fold0"]["test"]) == ["a10", "a9"]


def test_drawn_prototype_folds_are_disjoint_whole_prototypes_of_about_the_test_fraction():
    splits, summary = split({"kind": "leave_cluster_out", "by": "prototype", "folds": 3, "test_fraction": 0.15})
    tests = [set(splits["e"][f"fold{i}"]["test"]) for i in range(3)]
    assert all(len(t) >= 2 for t in tests) and not (tests[0] & tests[1] or tests[0] & tests[2] or tests[1] & tests[2])
    for index, test in enumerate(tests):
        held = set(summary["e"][f"fold{index}"]["cluster"].split(", "))
        assert {GROUPS[i]["prototype"] for i in test} == held  # the fold's test part is exactly its held-out prototypes
        train = splits["e"][f"fold{index}"]["train"] + splits["e"][f"fold{index}"]["val"]
        assert not held & {GROUPS[i]["prototype"] for i in train}
    again, _ = split({"kind": "leave_cluster_out", "by": "prototype", "folds": 3, "test_fraction": 0.15})
    assert again == splits  # seeded


def test_a_target_range_split_tests_the_upper_tail_with_ties_kept_together():
    targets = {"e": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9], dtype=float)}
    splits, summary = split({"kind": "target_range", "tail": "upper", "test_fraction": 0.2}, targets=targets)
    assert sorted(splits["e"]["fold0"]["test"]) == ["a10", "a11", "a12"]  # 20% of 12 is 2, the tie at 9 makes it 3
    assert max(targets["e"][IDS.index(i)] for i in splits["e"]["fold0"]["train"]) <= 8
    assert summary["e"]["fold0"]["cluster"] == "target >= 9"
    splits, _ = split({"kind": "target_range", "tail": "lower", "test_fraction": 0.25}, targets=targets)
    assert sorted(splits["e"]["fold0"]["test"]) == ["a1", "a2", "a3"]


def test_a_held_out_cluster_the_data_lacks_stops_the_split_naming_it():
    with pytest.raises(EmptyFoldError, match=r"split.holdout\[1\] = 'Xe'.*fold1's test part empty"):
        split({"kind": "leave_cluster_out", "by": "element", "holdout": ["O", "Xe"]})
    with pytest.raises(EmptyFoldError, match=r"runs out of clusters after \d of 20 folds"):
        split({"kind": "leave_cluster_out", "by": "prototype", "folds": 20, "test_fraction": 0.15})


@pytest.fixture
def config(tmp_path, mp_embedded_path, matminer_data):
    return write_tiny_config(tmp_path / "base", mp_embedded_path, matminer_data, datasets=(MP,))


@pytest.mark.parametrize("split_block, leakage, match", [
    ({"kind": "leave_cluster_out", "by": "element", "folds": 2, "test_fraction": 0.1}, None,
     r"split.holdout': leave_cluster_out by element needs the elements to hold out"),
    ({"kind": "leave_cluster_out", "by": "element", "holdout": ["O", "Qq"]}, None, r"split.holdout.1': 'Qq' is not an element"),
    ({"kind": "leave_cluster_out", "by": "crystal_system", "holdout": ["cubic", "rhombic"]}, None,
     r"split.holdout.1': 'rhombic' is not a crystal system; the crystal systems: \['triclinic'"),
    ({"kind": "leave_cluster_out", "by": "spacegroup", "holdout": [231]}, None, r"231 is not a space group number"),
    ({"kind": "leave_cluster_out", "by": "chemical_system", "holdout": ["Fe-Oo"]}, None, r"'Fe-Oo' is not a chemical system"),
    ({"kind": "leave_cluster_out", "by": "prototype"}, None, r"split': leave_cluster_out needs either `holdout` .* or `folds` with `test_fraction`"),
    ({"kind": "target_range", "tail": "middle", "test_fraction": 0.1}, None, r"split.tail': 'middle' is not one of \['upper', 'lower'\]"),
    ({"kind": "matformer", "seed": 0, "fractions": [0.8, 0.1, 0.1]}, "group", r"leakage': group makes a split by duplicate clusters"),
])  # fmt: skip
def test_a_cluster_rule_that_cannot_work_stops_at_start_up_naming_its_key(config, split_block, leakage, match):
    broken = copy.deepcopy(config)
    broken["datasets"][MP]["split"] = {**split_block, **({"val_fraction": 0.1, "seed": 0} if split_block["kind"] != "matformer" else {})}
    if leakage:
        broken["datasets"][MP]["leakage"] = leakage
    with pytest.raises(ConfigError, match=match):
        validate_config(broken)


def test_an_out_of_distribution_dataset_compares_with_a_random_split_dataset(config):
    broken = copy.deepcopy(config)
    broken["datasets"][MP]["compare_with"] = "nowhere"
    with pytest.raises(ConfigError, match=r"compare_with': unknown dataset 'nowhere'"):
        validate_config(broken)


def test_the_folds_of_a_cluster_split_come_from_its_config():
    assert dataset_folds({"split": {"kind": "leave_cluster_out", "by": "element", "holdout": ["O", "F", "N"]}}) == ["fold0", "fold1", "fold2"]
    assert dataset_folds({"split": {"kind": "leave_cluster_out", "by": "prototype", "folds": 2, "test_fraction": 0.1}}) == ["fold0", "fold1"]
    assert dataset_folds({"split": {"kind": "target_range", "tail": "upper", "test_fraction": 0.1}}) == ["fold0"]


def test_the_generalization_configuration_plans_its_jobs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--profile", "workflow/profiles/local",
         "--configfile", "config/generalization.yaml", "--config", f"results_dir={tmp_path / 'results'}", "--cores", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(line.split()[:2] for line in result.stdout.splitlines() if line.split()[:1] and line.split()[0] in
                  ("train", "split", "crystal_groups"))  # fmt: skip
    # 3 datasets (random 1 fold, prototype 2, chemical system 2) x 2 models x 3 diffraction modes x 2 seeds + 5 Dummies
    assert counts == {"train": "65", "split": "3", "crystal_groups": "3"}
