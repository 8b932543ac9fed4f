"""The prepare step records the SHA-256 of structures.parquet and the split step that of every id
list; the steps that read them check it once per job, and a file edited, damaged or unreadable
since it was written stops the step with its name and the fix. Results written before checksums
existed are read as before."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prdnet.cli import main
from prdnet.data.checksums import DataChecksumError, verify_split_lists, verify_structures
from prdnet.data.graphs import GraphParams
from prdnet.data.prepare import prepare_dataset
from prdnet.data.shards import featurize_dataset
from prdnet.data.validate import ValidationRules
from prdnet.io import file_digest, write_json, write_parquet
from test_own_data import DATASETS, RANDOM

TASK = "heat_of_formation"


@pytest.fixture
def dataset(tmp_path):
    """The CIF-folder fixture prepared and split by `prdnet groups` and `prdnet split`, in the workflow's layout."""
    folder = tmp_path / "results" / "cifs"
    prepare_dataset("cifs", DATASETS["perovskites_cif"], ValidationRules(), folder)
    structures = folder / "structures.parquet"
    assert main(["groups", "--structures", str(structures), "--out", str(folder / "crystal_groups.parquet")]) == 0
    assert main(["split", "--structures", str(structures), "--official-folds", str(folder / "official_folds.json"),
                 "--split", json.dumps(RANDOM), "--groups", str(folder / "crystal_groups.parquet"),
                 "--out-dir", str(folder / "splits")]) == 0  # fmt: skip
    return folder


def e(path) -> str:
    """A path as a regular expression matching it literally."""
    return re.escape(str(path))


def flip_bytes(path, where: float) -> None:
    """Invert 4 bytes at ``where`` (a fraction of the file's length)."""
    data = bytearray(path.read_bytes())
    offset = min(int(where * len(data)), len(data) - 4)
    data[offset : offset + 4] = bytes(b ^ 0xFF for b in data[offset : offset + 4])
    path.write_bytes(bytes(data))


def edit_first_id(path) -> None:
    """Rewrite a crystal table (a valid Parquet file) or an id list with its first id changed."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        ids = table.column("id").to_pylist()
        edited = pa.array([f"{ids[0]}-edited", *ids[1:]])
        write_parquet(path, table.set_column(table.schema.get_field_index("id"), "id", edited))
    else:
        lines = path.read_text().splitlines()
        path.write_text("\n".join([f"{lines[0]}-edited", *lines[1:]]) + "\n")


TAMPERINGS = {
    "edited id": edit_first_id,
    "bytes flipped at 10%": lambda path: flip_bytes(path, 0.1),
    "bytes flipped at 50%": lambda path: flip_bytes(path, 0.5),
    "bytes flipped at the end": lambda path: flip_bytes(path, 1.0),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
}


def test_prepare_records_the_sha256_of_structures_parquet_and_it_passes_its_check(dataset):
    summary = json.loads((dataset / "summary.json").read_text())
    assert summary["checksums"] == {"structures.parquet": file_digest(dataset / "structures.parquet")}
    assert summary["checksums_version"] == 1
    verify_structures(dataset / "structures.parquet")  # untouched: no complaint


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_changed_structures_parquet_is_named_with_the_fix(dataset, tamper):
    structures = dataset / "structures.parquet"
    tamper(structures)
    summary = dataset / "summary.json"
    with pytest.raises(DataChecksumError, match=rf"crystal table {e(structures)} has SHA-256 .*, not the .* recorded "
                                                rf"in {e(summary)}: .*; delete {e(structures)} and run the workflow "
                                                "again: its prepare step rewrites it"):  # fmt: skip
        verify_structures(structures)


def test_every_step_that_reads_structures_parquet_stops_on_a_changed_one(dataset):
    structures = dataset / "structures.parquet"
    edit_first_id(structures)
    commands = {
        "featurize": ["featurize", "--structures", str(structures), "--featurizer", json.dumps({"n_shards": 1}),
                      "--out-dir", str(dataset / "graphs")],
        "groups": ["groups", "--structures", str(structures), "--out", str(dataset / "groups2.parquet")],
        "split": ["split", "--structures", str(structures), "--official-folds", str(dataset / "official_folds.json"),
                  "--split", json.dumps(RANDOM), "--groups", str(dataset / "crystal_groups.parquet"),
                  "--out-dir", str(dataset / "splits2")],
        "train": ["train", "--shards", str(dataset / "no-shard-read.parquet"),
                  "--split-dir", str(dataset / "splits" / TASK / "fold0"),
                  "--dataset-summary", str(dataset / "summary.json"), "--task", TASK,
                  "--model-spec", '{"name": "dummy"}', "--structures", str(structures),
                  "--out-dir", str(dataset / "runs" / "job")],
    }  # fmt: skip
    for name, command in commands.items():
        with pytest.raises(SystemExit, match=rf"prdnet {name}: crystal table {e(structures)} has SHA-256 .* delete "
                                             f"{e(structures)} and run the workflow again"):  # fmt: skip
            main(command)
    assert not any((dataset / name).exists() for name in ("graphs", "groups2.parquet", "splits2", "runs"))  # none wrote


def test_the_split_step_records_every_lists_sha256_and_they_pass_their_check(dataset):
    summary = json.loads((dataset / "splits" / "summary.json").read_text())
    lists = sorted((dataset / "splits").glob("*/*/*.txt"))
    assert [path.name for path in lists] == ["test.txt", "train.txt", "val.txt"]
    assert summary["checksums"] == {path.relative_to(dataset / "splits").as_posix(): file_digest(path)
                                    for path in lists}  # fmt: skip
    assert summary["checksums_version"] == 1 and summary[TASK]["fold0"]["train"] == 6  # the counts stay as they were
    verify_split_lists(dataset / "splits" / TASK / "fold0")  # untouched: no complaint


def test_untouched_split_lists_let_the_training_job_run(dataset):
    manifest = featurize_dataset(dataset / "structures.parquet", dataset / "graphs", GraphParams(), n_shards=1)
    out = dataset / "runs" / "dummy"
    assert main(["train", "--shards", str(dataset / "graphs" / manifest["shards"][0]),
                 "--split-dir", str(dataset / "splits" / TASK / "fold0"),
                 "--dataset-summary", str(dataset / "summary.json"), "--task", TASK,
                 "--model-spec", '{"name": "dummy"}', "--out-dir", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "metrics.json").read_text())["n_train"] == 6


@pytest.mark.parametrize("part", ["train", "test"])
@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_changed_split_list_stops_the_training_job_naming_it_and_the_fix(dataset, tamper, part):
    split_dir = dataset / "splits" / TASK / "fold0"
    tamper(split_dir / f"{part}.txt")
    summary = dataset / "splits" / "summary.json"
    with pytest.raises(SystemExit, match=rf"prdnet train: split list {e(split_dir / f'{part}.txt')} has SHA-256 .* "
                                         rf"recorded in {e(summary)}: .*; delete {e(summary)} and run the workflow "
                                         "again: its split step rewrites every list of the dataset"):  # fmt: skip
        main(["train", "--shards", str(dataset / "no-shard-read.parquet"), "--split-dir", str(split_dir),
              "--dataset-summary", str(dataset / "summary.json"), "--task", TASK, "--model-spec", '{"name": "dummy"}',
              "--out-dir", str(dataset / "runs" / "job")])  # fmt: skip
    assert not (dataset / "runs").exists()


def test_an_unreadable_split_list_is_named_with_the_fix(dataset):
    split_dir = dataset / "splits" / TASK / "fold0"
    (split_dir / "val.txt").unlink()
    summary = dataset / "splits" / "summary.json"
    with pytest.raises(DataChecksumError, match=rf"split list {e(split_dir / 'val.txt')} cannot be read .*; delete "
                                                rf"{e(summary)} and run the workflow again"):  # fmt: skip
        verify_split_lists(split_dir)


def test_a_summary_written_before_checksums_is_read_unchecked(dataset):
    split_dir = dataset / "splits" / TASK / "fold0"
    edit_first_id(split_dir / "train.txt")
    summary = json.loads((dataset / "splits" / "summary.json").read_text())
    write_json(dataset / "splits" / "summary.json", {k: v for k, v in summary.items() if not k.startswith("checksums")})
    verify_split_lists(split_dir)  # an older results folder: nothing recorded, nothing to check
    (dataset / "splits" / "summary.json").unlink()
    verify_split_lists(split_dir)  # lists written by hand, without the split step


def test_a_summary_claiming_checksums_without_the_files_one_is_an_error(dataset):
    summary = json.loads((dataset / "summary.json").read_text())
    write_json(dataset / "summary.json", {**summary, "checksums": {}})
    structures = dataset / "structures.parquet"
    with pytest.raises(DataChecksumError, match=rf"crystal table {e(structures)} has no checksum in "
                                                rf"{e(dataset / 'summary.json')} \(checksums_version 1"):  # fmt: skip
        verify_structures(dataset / "structures.parquet")
