"""Input hardening: bad lines become rejects, ids are normalised once, absurd targets are
rejected, and a training run whose loss is not finite fails instead of reporting Infinity."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from prdnet.config import ConfigError, load_config
from prdnet.data.ids import normalise_id
from prdnet.data.prepare import EmptyDatasetError, collect_entries, entries_to_columns, prepare_dataset
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import featurize_dataset
from prdnet.data.sources.files import DataFileError
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.splits import random_split, read_split, write_splits
from prdnet.data.tables import crystals_table, read_crystals
from prdnet.data.validate import ValidationRules
from prdnet.io import write_parquet
from prdnet.training import TrainingConfig, TrainingJob, run_training

from test_prepare import record

TASKS = ["formation_energy", "band_gap", "is_metal"]


def prepare_lines(tmp_path, lines: list[bytes], rules: ValidationRules = ValidationRules(), gzipped: bool = True):
    """Prepare an embedded-MP-format file made of ``lines``; return the summary, rejects and crystals."""
    path = tmp_path / "data.jsonl.gz"
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gzipped else data)
    options = {"source": "mp_2018_cgcnn36k", "path": str(path), "tasks": TASKS}
    summary = prepare_dataset("tiny", options, rules, tmp_path / "out")
    with open(tmp_path / "out" / "rejects.csv", encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    crystals = read_crystals(pq.read_table(tmp_path / "out" / "structures.parquet"))
    return summary, rejects, crystals


def line(entry) -> bytes:
    return json.dumps(entry).encode()


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"[1, 2, 3]", "malformed record: a JSON array, not an object"),
        (b"null", "malformed record: a JSON null, not an object"),
        (b'"text"', "malformed record: a JSON string, not an object"),
        (b"\xff\xfe{\"material_id\": 1}", "malformed record: not UTF-8"),
    ],
)
def test_a_line_that_is_not_an_object_is_one_reject(tmp_path, bad, reason):
    summary, rejects, crystals = prepare_lines(tmp_path, [line(record("mp-1")), bad, line(record("mp-2"))])
    assert crystals.ids == ["mp-1", "mp-2"]
    assert [(r["id"], r["task"]) for r in rejects] == [("line-2", "*")]
    assert rejects[0]["reason"].startswith(reason), rejects[0]["reason"]
    assert summary["read"] == 3 and summary["rejected"] == 1


def test_a_plain_file_is_read_whatever_its_name(tmp_path):
    _, _, crystals = prepare_lines(tmp_path, [line(record("mp-1"))], gzipped=False)
    assert crystals.ids == ["mp-1"]


def test_a_folder_or_a_broken_gzip_file_is_a_clear_error(tmp_path):
    options = {"source": "mp_2018_cgcnn36k", "path": str(tmp_path), "tasks": TASKS}
    with pytest.raises(DataFileError, match="is a folder, not a file"):
        prepare_dataset("tiny", options, ValidationRules(), tmp_path / "out")
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(line(record("mp-1")) * 50)[:40])
    with pytest.raises(DataFileError, match="cannot read"):
        prepare_dataset("tiny", {**options, "path": str(broken)}, ValidationRules(), tmp_path / "out")


def test_ids_are_normalised_and_near_duplicates_rejected(tmp_path):
    lines = [line(record(" mp-1\t")), line(record("mp-2")), line(record("mp-1")), line(record("mp-2 "))]
    _, rejects, crystals = prepare_lines(tmp_path, lines)
    assert crystals.ids == ["mp-1", "mp-2"]
    assert [(r["id"], r["reason"]) for r in rejects] == [
        ("mp-1", "duplicate id: 'mp-1' equals ' mp-1\\t' after normalisation"),
        ("mp-2 ", "duplicate id: 'mp-2 ' equals 'mp-2' after normalisation"),
    ]


def test_an_empty_id_is_rejected(tmp_path):
    _, rejects, crystals = prepare_lines(tmp_path, [line(record("  ")), line(record("mp-2"))])
    # the embedded format falls back to the line number for a missing id; a blank one is kept and rejected
    assert crystals.ids == ["mp-2"] and rejects[0]["reason"] == "malformed id: empty"


def test_split_files_read_back_with_the_same_rule_as_prepare(tmp_path):
    ids = [normalise_id(raw) for raw in [" a", "b ", "c", "d", "e", "f", "g", "h", "i", "j"]]
    split = random_split(ids, (0.6, 0.2, 0.2), seed=0)
    write_splits({"t": {"fold0": split}}, tmp_path)
    for name in ("train", "val", "test"):
        path = tmp_path / "t" / "fold0" / f"{name}.txt"
        path.write_text("".join(f"  {i} \n" for i in split[name]))  # whitespace added by a hand edit
        assert read_split(path) == split[name]


def test_absurd_targets_are_rejected_for_their_task_only(tmp_path):
    lines = [line(record("mp-ok")), line(record("mp-huge", e_form=1e30)), line(record("mp-inf32", e_form=1e39)),
             line(record("mp-neg-gap", gap=-5.0))]  # fmt: skip
    _, rejects, crystals = prepare_lines(tmp_path, lines)
    reasons = {(r["id"], r["task"]): r["reason"] for r in rejects}
    assert reasons[("mp-huge", "formation_energy")].startswith("implausible target: 1e+30 outside [-10.0, 10.0]")
    assert reasons[("mp-inf32", "formation_energy")].startswith("target beyond float32: 1e+39")
    assert reasons[("mp-neg-gap", "band_gap")].startswith("implausible target: -5 outside [0.0, 30.0]")
    # the crystal stays for its other tasks; the rejected target is gone from the table
    targets = dict(zip(crystals.ids, crystals.targets["formation_energy"]))
    assert crystals.ids == ["mp-ok", "mp-huge", "mp-inf32", "mp-neg-gap"]
    assert np.isnan(targets["mp-huge"]) and np.isnan(targets["mp-inf32"]) and targets["mp-neg-gap"] == -1.0
    assert np.isnan(crystals.targets["band_gap"][3])


def test_configured_bounds_replace_the_defaults(tmp_path):
    rules = ValidationRules(target_bounds={"band_gap": [-10.0, None], "formation_energy": [-0.5, 0.5]})
    lines = [line(record("mp-neg-gap", gap=-5.0, e_form=-1.0)), line(record("mp-ok", e_form=0.1))]
    _, rejects, _ = prepare_lines(tmp_path, lines, rules)
    assert [(r["id"], r["task"], r["reason"].split(":")[0]) for r in rejects] == [("mp-neg-gap", "formation_energy", "implausible target")]


def test_a_task_left_without_any_usable_target_stops_prepare(tmp_path):
    with pytest.raises(EmptyDatasetError, match=r"no usable target for task 'formation_energy' .*'implausible target': 1"):
        prepare_lines(tmp_path, [line(record("mp-1", e_form=50.0))])


def test_bounds_with_low_above_high_are_a_config_error(tmp_path):
    from tiny_workflow import ROOT
    import yaml

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["validation"]["target_bounds"] = {"band_gap": [30, 0]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="validation.target_bounds.band_gap"):
        load_config(tmp_path / "c.yaml")


def test_a_class_label_must_be_a_non_negative_integer():
    from prdnet.data.sources import Entry, Task
    from prdnet.data.validate import validate_entry
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    task = {"label": Task("label", "classification", "")}
    rejects = validate_entry(Entry("x", structure, {"label": 0.5, "other": 1.0}), ["label", "other"], ValidationRules(), task)
    assert [(r.task, r.reason) for r in rejects] == [("label", "invalid class label: 0.5 (a non-negative integer is needed)")]


def test_a_non_finite_training_loss_fails_the_job(mp_embedded_path, tmp_path):
    entries, _, _ = collect_entries(read_mp_embedded(mp_embedded_path, limit=16), ["formation_energy"], ValidationRules())
    crystals = entries_to_columns(entries, ["formation_energy"])
    crystals.targets["formation_energy"][0] = 1e39  # past validation (as before it existed): inf in float32
    write_parquet(tmp_path / "structures.parquet", crystals_table(crystals))
    manifest = featurize_dataset(tmp_path / "structures.parquet", tmp_path / "graphs",
                                 graph_recipe_for({"name": "cgcnn", "preset": "small"}), n_shards=1)
    split = random_split(crystals.ids, (0.5, 0.25, 0.25), seed=0)
    split["train"] = [crystals.ids[0], *[i for i in split["train"] if i != crystals.ids[0]]]
    for name in ("val", "test"):
        split[name] = [i for i in split[name] if i != crystals.ids[0]]
    write_splits({"formation_energy": {"fold0": split}}, tmp_path / "splits")
    job = TrainingJob(
        shard_paths=[tmp_path / "graphs" / name for name in manifest["shards"]],
        split_dir=tmp_path / "splits" / "formation_energy" / "fold0", task="formation_energy", task_kind="regression",
        unit="eV/atom", model_spec={"name": "cgcnn", "preset": "small"}, training=TrainingConfig(epochs=1, batch_size=4),
        out_dir=tmp_path / "job",
    )  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"training loss \(epoch \d+, batch \d+; crystals \[.*mp-.*\]; the training targets span \[.*\].*\) is (nan|inf)"):
        run_training(job)
    assert not (tmp_path / "job" / "metrics.json").exists()
