"""Your own data by configuration only: a CIF folder + CSV, an extxyz file, a MatBench-format JSON
under a new name and a CSV with POSCAR text each become a dataset (bad rows in rejects.csv with
their reasons) and train through the workflow with no Python written by the user.

Fixtures: tests/fixtures/own_data (written by make_fixtures.py from the embedded MP set)."""

from __future__ import annotations

import copy
import csv
import gzip
import json
import shutil

import pandas as pd
import pytest
import yaml

from conftest import SHARED_DATA
from prdnet.config import ConfigError, validate_config
from prdnet.data.prepare import EmptyDatasetError, prepare_dataset
from prdnet.data.sources.files import DataFileError
from prdnet.data.validate import ValidationRules
from tiny_workflow import ROOT, snakemake

FIXTURES = ROOT / "tests" / "fixtures" / "own_data"
E_FORM = {"column": "e_form", "kind": "regression", "unit": "eV/atom"}
RANDOM = {"kind": "random", "fractions": [0.6, 0.2, 0.2], "seed": 0}

DATASETS = {
    "perovskites_cif": {
        "source": "structure_folder", "structures_dir": str(FIXTURES / "cif_folder"),
        "path": str(FIXTURES / "cif_folder" / "targets.csv"), "id_column": "id",
        "targets": {"heat_of_formation": {"column": "heat_of_formation", "kind": "regression", "unit": "eV/atom"}},
        "tasks": ["heat_of_formation"], "split": RANDOM,
    },
    "carbon_xyz": {
        "source": "ase", "path": str(FIXTURES / "structures.extxyz"), "id_key": "material_id",
        "targets": {"energy_per_atom": {"column": "energy", "unit": "eV/atom", "per_atom": True}},
        "tasks": ["energy_per_atom"], "split": RANDOM,
    },
    "my_matbench": {
        "source": "matbench_json", "path": str(FIXTURES / "perovskites_mb.json.gz"),
        "targets": {"e_form": E_FORM}, "tasks": ["e_form"], "split": RANDOM,
    },
    "poscar_csv": {
        "source": "table", "path": str(FIXTURES / "poscar_table.csv"), "id_column": "id", "structure_column": "poscar",
        "targets": {"e_form": E_FORM}, "tasks": ["e_form"],
        "split": {"kind": "fold_column", "column": "fold", "n_folds": 2, "val_fraction": 0.2, "seed": 0},
    },
}  # fmt: skip


def prepare(tmp_path, options, name="own"):
    summary = prepare_dataset(name, options, ValidationRules(), tmp_path / name)
    with open(tmp_path / name / "rejects.csv", encoding="utf-8") as handle:
        rejects = {r["id"]: r["reason"] for r in csv.DictReader(handle)}
    return summary, rejects


def test_cif_folder_with_a_targets_csv(tmp_path):
    summary, rejects = prepare(tmp_path, DATASETS["perovskites_cif"])
    assert summary["accepted"] == 10 and summary["tasks"]["heat_of_formation"] == {"kind": "regression", "unit": "eV/atom"}
    assert rejects["orphan-1"].startswith("no row in the targets table targets.csv for orphan-1.cif")
    assert rejects["no-file-1"].startswith("structure file not found")
    assert rejects["broken-1"].startswith("malformed structure file broken-1.cif")
    assert summary["read"] == summary["accepted"] + summary["rejected"] == 13


def test_alignn_style_ids_naming_the_file(tmp_path):
    folder = shutil.copytree(FIXTURES / "cif_folder", tmp_path / "cifs")
    rows = pd.read_csv(folder / "targets.csv", dtype=str)
    rows["id"] = rows["id"] + ".cif"
    rows.to_csv(folder / "id_prop.csv", index=False)
    summary, rejects = prepare(tmp_path, {**DATASETS["perovskites_cif"], "structures_dir": str(folder), "path": str(folder / "id_prop.csv")})
    assert summary["accepted"] == 10 and "mp-1" not in rejects


def test_extxyz_targets_from_the_comment_line_per_atom(tmp_path):
    from ase.io import read

    summary, rejects = prepare(tmp_path, DATASETS["carbon_xyz"])
    assert summary["accepted"] == 10 and rejects == {}
    crystals = pd.read_parquet(tmp_path / "own" / "structures.parquet")
    first = read(FIXTURES / "structures.extxyz", index=0)
    row = crystals[crystals["id"] == first.info["material_id"]].iloc[0]
    assert row["target.energy_per_atom"] == pytest.approx(first.get_potential_energy() / len(first))


def test_an_ase_database(tmp_path):
    import ase.db
    from ase.io import read

    with ase.db.connect(str(tmp_path / "frames.db")) as database:
        for atoms in read(FIXTURES / "structures.extxyz", index=":"):
            database.write(atoms, material_id=atoms.info["material_id"], energy_total=atoms.get_potential_energy())
    options = {**DATASETS["carbon_xyz"], "path": str(tmp_path / "frames.db"),
               "targets": {"energy_per_atom": {"column": "energy_total", "unit": "eV/atom", "per_atom": True}}}  # fmt: skip
    summary, rejects = prepare(tmp_path, options)
    assert summary["accepted"] == 10 and rejects == {}


def test_matbench_format_json_under_a_new_name(tmp_path):
    summary, _ = prepare(tmp_path, DATASETS["my_matbench"])
    assert summary["accepted"] == 10
    assert list(pd.read_parquet(tmp_path / "own" / "structures.parquet")["id"])[:2] == ["mb-own-000", "mb-own-001"]


def test_csv_with_poscar_text_and_a_fold_column(tmp_path):
    summary, _ = prepare(tmp_path, DATASETS["poscar_csv"])
    folds = json.loads((tmp_path / "own" / "official_folds.json").read_text())
    assert summary["accepted"] == 12 and sorted(folds) == ["fold0", "fold1"]
    assert len(folds["fold0"]) == len(folds["fold1"]) == 6 and not set(folds["fold0"]) & set(folds["fold1"])


@pytest.mark.parametrize("fmt", ["csv.gz", "parquet", "jsonl", "jsonl.gz", "json"])
def test_every_table_format_gives_the_same_crystals(tmp_path, fmt):
    frame = pd.read_csv(FIXTURES / "poscar_table.csv", dtype={"id": str})
    path = tmp_path / f"table.{fmt}"
    if fmt == "csv.gz":
        path.write_bytes(gzip.compress((FIXTURES / "poscar_table.csv").read_bytes()))
    elif fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "json":
        frame.to_json(path, orient="records")
    else:
        text = frame.to_json(orient="records", lines=True)
        path.write_bytes(gzip.compress(text.encode()) if fmt.endswith(".gz") else text.encode())
    summary, _ = prepare(tmp_path, {**DATASETS["poscar_csv"], "path": str(path)})
    assert summary["accepted"] == 12


def test_unreadable_rows_are_rejects_with_reasons(tmp_path):
    rows = pd.read_csv(FIXTURES / "poscar_table.csv", dtype=str)
    rows.loc[0, "poscar"] = "not a structure\nat all"
    rows.loc[1, "id"] = ""
    rows.loc[2, "fold"] = "7"
    rows.loc[3, "e_form"] = "n/a"
    rows.to_csv(tmp_path / "table.csv", index=False)
    summary, rejects = prepare(tmp_path, {**DATASETS["poscar_csv"], "path": str(tmp_path / "table.csv")})
    assert rejects[rows.loc[0, "id"]].startswith("malformed structure (poscar)")
    assert rejects["row-2"] == "malformed record: no id in column id"
    assert rejects[rows.loc[2, "id"]] == "bad fold value: '7' in column fold (expected 0 .. 1)"
    assert rejects[rows.loc[3, "id"]] == "no usable target for any task (e_form: missing target)"
    assert summary["accepted"] == 8 and summary["rejected"] == 4


def test_a_folder_a_bad_gzip_or_a_misspelled_column_is_a_clear_error(tmp_path):
    with pytest.raises(DataFileError, match="is a folder, not a file"):
        prepare(tmp_path, {**DATASETS["poscar_csv"], "path": str(FIXTURES)})
    broken = tmp_path / "table.csv.gz"
    broken.write_bytes(gzip.compress((FIXTURES / "poscar_table.csv").read_bytes())[:100])
    with pytest.raises(DataFileError, match="cannot read"):
        prepare(tmp_path, {**DATASETS["poscar_csv"], "path": str(broken)})
    with pytest.raises(DataFileError, match=r"no column 'datasets.<name>.targets.e_form.column' = 'E_form'"):
        prepare(tmp_path, {**DATASETS["poscar_csv"], "targets": {"e_form": {**E_FORM, "column": "E_form"}}})


def test_a_table_with_no_accepted_entry_is_an_error(tmp_path):
    rows = pd.read_csv(FIXTURES / "poscar_table.csv", dtype=str)
    rows["poscar"] = "garbage"
    rows.to_csv(tmp_path / "table.csv", index=False)
    with pytest.raises(EmptyDatasetError, match="0 of 12 entries accepted"):
        prepare(tmp_path, {**DATASETS["poscar_csv"], "path": str(tmp_path / "table.csv")})


def own_data_config() -> dict:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config.update(results_dir="results", datasets=copy.deepcopy(DATASETS), published_scores=None)
    config["atom_features"] = str(SHARED_DATA / "cgcnn" / "atom_init.json")  # absolute: runs start elsewhere
    config["featurizer"]["n_shards"] = 1
    config["models"] = {"cgcnn": {"name": "cgcnn", "preset": "small", "hyperparameters": {"backbone": {"channels": 8, "layers": 1}}}}
    config["experiments"] = [{"datasets": sorted(DATASETS), "models": ["cgcnn"], "diffraction": ["none"], "ablations": ["default"]}]
    config["training"].update(epochs=1, batch_size=4)
    return config


def test_a_task_without_a_targets_entry_is_a_config_error():
    config = own_data_config()
    config["datasets"]["poscar_csv"] = {**DATASETS["poscar_csv"], "tasks": ["e_form", "band_gap"]}
    with pytest.raises(ConfigError, match=r"datasets.poscar_csv.tasks': \['band_gap'\] have no entry"):
        validate_config(config)


@pytest.mark.workflow
def test_each_format_trains_through_the_workflow(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(own_data_config()))
    run = snakemake(tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results"
    expected = {"perovskites_cif": ["fold0"], "carbon_xyz": ["fold0"], "my_matbench": ["fold0"], "poscar_csv": ["fold0", "fold1"]}
    for dataset, folds in expected.items():
        (task,) = DATASETS[dataset]["tasks"]
        for fold in folds:
            metrics = json.loads((results / dataset / "runs" / task / fold / "cgcnn/none/default/seed0/metrics.json").read_text())
            assert metrics["test_mae"] == metrics["test_mae"] and metrics["unit"] == "eV/atom"
        assert (results / "tables" / f"{dataset}.md").exists()
    assert "no-file-1" in (results / "perovskites_cif" / "rejects.csv").read_text()
    assert (results / "logs" / "prepare" / "perovskites_cif.log").exists() and not (tmp_path / "logs").exists()


def test_the_readme_config_for_a_cif_folder_is_valid():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Benchmark your own data")[1]
    block = section.split("```yaml\n")[1].split("```")[0]
    config = validate_config(yaml.safe_load(block))
    assert config["datasets"]["perovskites"]["source"] == "structure_folder"
