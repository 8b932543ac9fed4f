"""Networked sources (mp-api, jarvis-tools, matbench downloads) on small recorded responses.

Only the network boundary is replaced: a fake ``MPRester`` returning recorded summary
documents, a fake ``jarvis.db.figshare.data`` returning recorded records. Parsing, unit
conversion, caching, validation (rejects.csv through ``prepare_dataset``) and the Matformer split
recipe are the real code.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prdnet.data.prepare import prepare_dataset
from prdnet.data.sources import jarvis, load_source, matbench, mp_live
from prdnet.data.splits import make_splits
from prdnet.data.tables import read_crystals
from prdnet.data.validate import ValidationRules
from prdnet.io import decode_metadata

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAKE_KEY = "fake-key-0123456789abcdef"


def recorded(name):
    return json.loads((FIXTURES / name).read_text())


def read_rejects(out):
    with open(out / "rejects.csv") as handle:
        return [(r["id"], r["task"], r["reason"]) for r in csv.DictReader(handle)]


def splits_of(out, split_options):
    """What the split step computes from the prepared table (same calls as ``prdnet split``)."""
    table = pq.read_table(out / "structures.parquet")
    crystals = read_crystals(table)
    candidates = decode_metadata(table.schema)["prdnet.summary"]["split_candidates"]
    return make_splits(crystals.ids, crystals.targets, split_options, {}, candidates)


def recipe(rows, n_train, n_val, n_test, seed=123):
    """The published recipe, written out as Matformer's code does it."""
    ids = list(range(len(rows)))
    random.seed(seed)
    random.shuffle(ids)
    pick = lambda part: [rows[i] for i in part]  # noqa: E731
    return pick(ids[:n_train]), pick(ids[-(n_val + n_test) : -n_test]), pick(ids[-n_test:])


# --------------------------------------------------------------------------- mp-api (mp_live)


class FakeSummary:
    def __init__(self, documents, calls):
        self.documents, self.calls = documents, calls

    def search(self, **kwargs):
        self.calls.append(kwargs)
        ids = kwargs.get("material_ids")
        return [d for d in self.documents if ids is None or d["material_id"] in ids]


class FakeMPRester:
    """Stands in for mp_api.client.MPRester at the network boundary: returns recorded documents."""

    calls: list = []
    keys: list = []

    def __init__(self, key):
        FakeMPRester.keys.append(key)
        self.materials = type("Materials", (), {"summary": FakeSummary(recorded("mp_api_summary_docs.json"), FakeMPRester.calls)})()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_database_version(self):
        return "2025.09.25"


@pytest.fixture
def fake_mp(monkeypatch):
    FakeMPRester.calls, FakeMPRester.keys = [], []
    monkeypatch.setattr(mp_live, "open_rester", FakeMPRester)
    monkeypatch.setenv("MP_API_KEY", FAKE_KEY)
    return FakeMPRester


MP_TASKS = ["formation_energy", "band_gap", "is_metal", "bulk_modulus", "shear_modulus", "youngs_modulus"]


@pytest.fixture
def mp_prepared(fake_mp, tmp_path):
    options = {"source": "mp_live", "criteria": {"deprecated": False, "num_sites": [1, 500]}, "chunk_size": 100,
               "cache": str(tmp_path / "resources" / "mp_live" / "mp.json.gz"), "tasks": MP_TASKS}  # fmt: skip
    summary = prepare_dataset("mp", options, ValidationRules(), tmp_path / "out")
    return summary, tmp_path / "out", options


def test_mp_live_query_always_has_criteria_and_fields(mp_prepared, fake_mp):
    (call,) = fake_mp.calls
    assert call["deprecated"] is False and call["num_sites"] == (1, 500)
    assert set(call["fields"]) >= {"structure", "formation_energy_per_atom", "band_gap", "is_metal", "bulk_modulus"}
    assert fake_mp.keys == [FAKE_KEY]
    with pytest.raises(ValueError, match="whole Materials Project database"):
        mp_live.query_plan({"criteria": {}})
    chunks = mp_live.query_plan({"material_ids": [f"mp-{i}" for i in range(5)], "chunk_size": 2})
    assert [len(c["material_ids"]) for c in chunks] == [2, 2, 1]


def test_mp_live_units_and_youngs_modulus(mp_prepared):
    _, out, _ = mp_prepared
    crystals = read_crystals(pq.read_table(out / "structures.parquet"))
    targets = {t: dict(zip(crystals.ids, v)) for t, v in crystals.targets.items()}
    k, g = 25.0, 15.0  # NaCl VRH moduli in the recorded document, GPa
    assert targets["bulk_modulus"]["mp-22862"] == pytest.approx(math.log10(k))
    assert targets["shear_modulus"]["mp-22862"] == pytest.approx(math.log10(g))
    assert targets["youngs_modulus"]["mp-22862"] == pytest.approx(math.log10(9 * k * g / (3 * k + g)))
    assert mp_live.youngs_modulus(k, g) == pytest.approx(37.5)
    assert targets["is_metal"]["mp-13"] == 1.0 and targets["is_metal"]["mp-22862"] == 0.0
    assert targets["formation_energy"]["mp-22862"] == pytest.approx(-2.092)
    assert targets["band_gap"]["mp-149"] == pytest.approx(0.62)


def test_mp_live_missing_targets_and_malformed_structure_land_in_rejects(mp_prepared):
    summary, out, _ = mp_prepared
    rejects = read_rejects(out)
    broken = [r for r in rejects if r[0] == "mp-broken"]
    assert len(broken) == 1 and broken[0][1] == "*" and broken[0][2].startswith("malformed structure")
    assert ("mp-13", "formation_energy", "missing target") in rejects
    assert ("mp-149", "bulk_modulus", "missing target") in rejects
    assert ("mp-149", "youngs_modulus", "missing target") in rejects
    assert ("mp-1265", "shear_modulus", "non-finite target: nan") in rejects  # negative G has no log10
    assert summary["read"] == 6 and summary["accepted"] == 5 and summary["rejected"] == 1
    assert summary["task_counts"]["formation_energy"] == 4 and summary["task_counts"]["youngs_modulus"] == 3


def test_mp_live_records_version_and_never_writes_the_key(mp_prepared):
    summary, out, options = mp_prepared
    assert summary["source_version"].startswith("Materials Project 2025.09.25 via mp-api")
    version = json.loads(Path(options["cache"] + ".version.json").read_text())
    assert version["database_version"] == "2025.09.25" and version["documents"] == 6
    written = [Path(options["cache"] + ".version.json"), *out.iterdir()]
    for path in written:
        assert FAKE_KEY.encode() not in path.read_bytes(), path
    import gzip

    assert FAKE_KEY not in gzip.open(options["cache"], "rt").read()


def test_mp_live_reads_the_cache_without_the_network(mp_prepared, monkeypatch):
    _, _, options = mp_prepared
    monkeypatch.delenv("MP_API_KEY")
    monkeypatch.setattr(mp_live, "open_rester", None)  # any network use would fail
    source = load_source("mp_live", options)
    assert len(list(source.entries)) == 6


def test_mp_live_without_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    monkeypatch.setattr(mp_live, "open_rester", None)
    options = {"source": "mp_live", "criteria": {"deprecated": False}, "cache": str(tmp_path / "mp.json.gz")}
    with pytest.raises(mp_live.MissingApiKey, match="MP_API_KEY"):
        load_source("mp_live", options)


def test_mp_live_matformer_split_keeps_rejected_rows_in_place(mp_prepared):
    _, out, _ = mp_prepared
    splits, summary = splits_of(out, {"kind": "matformer", "fractions": [0.4, 0.2, 0.4], "seed": 123})
    # rows with a formation energy, in API order; mp-broken has one but fails validation
    rows = ["mp-22862", "mp-149", "mp-1265", "mp-broken", "mp-30"]
    train, val, test = recipe(rows, 2, 1, 2)
    part = splits["formation_energy"]["fold0"]
    assert part["train"] == [i for i in train if i != "mp-broken"]
    assert part["val"] == [i for i in val if i != "mp-broken"]
    assert part["test"] == [i for i in test if i != "mp-broken"]
    assert summary["formation_energy"]["fold0"]["unusable_test_ids"] == (["mp-broken"] if "mp-broken" in test else [])


# --------------------------------------------------------------------------- jarvis-tools


@pytest.fixture
def fake_jarvis(monkeypatch):
    calls = []

    def load(key, store_dir):
        calls.append((key, store_dir))
        return recorded("megnet_records.json" if key == "megnet" else "jarvis_dft_3d_2021_records.json")

    monkeypatch.setattr(jarvis, "load_figshare", load)
    return calls


JARVIS_TASKS = ["formation_energy", "optb88vdw_bandgap", "total_energy", "mbj_bandgap", "ehull", "bulk_modulus", "shear_modulus"]


@pytest.fixture
def jarvis_prepared(fake_jarvis, tmp_path):
    options = {"source": "jarvis_dft_3d_2021", "cache": str(tmp_path / "resources" / "jarvis.json.gz"), "tasks": JARVIS_TASKS}
    summary = prepare_dataset("jv", options, ValidationRules(), tmp_path / "out")
    return summary, tmp_path / "out", options


def test_jarvis_asks_for_the_2021_snapshot(jarvis_prepared, fake_jarvis):
    assert [key for key, _ in fake_jarvis] == ["dft_3d_2021"]
    assert jarvis.DATASETS["jarvis_dft_3d_2021"].expected == 55723
    summary, _, options = jarvis_prepared
    assert "dft_3d_2021" in summary["source_version"]
    assert json.loads(Path(options["cache"] + ".version.json").read_text())["records"] == 10


def test_jarvis_atoms_fractional_and_cartesian_give_the_same_crystal(jarvis_prepared):
    _, out, _ = jarvis_prepared
    crystals = read_crystals(pq.read_table(out / "structures.parquet"))
    index = crystals.ids.index("JVASP-23862")  # NaCl recorded with cartesian: true
    start = int(crystals.atom_counts[:index].sum())
    frac = crystals.frac_coords[start : start + 2]
    assert frac[1] == pytest.approx([0.5, 0.5, 0.5], abs=1e-5)
    record = next(r for r in recorded("jarvis_dft_3d_2021_records.json") if r["jid"] == "JVASP-1002")
    structure, error = jarvis.structure_from_atoms(record["atoms"])
    assert error is None and structure.composition.reduced_formula == "Si"


def test_jarvis_na_targets_and_malformed_structure_land_in_rejects(jarvis_prepared):
    summary, out, _ = jarvis_prepared
    rejects = read_rejects(out)
    assert ("JVASP-816", "formation_energy", "missing target") in rejects  # "na" in the record
    assert ("JVASP-816", "mbj_bandgap", "missing target") in rejects
    broken = [r for r in rejects if r[0] == "JVASP-broken"]
    assert len(broken) == 1 and broken[0][1] == "*" and broken[0][2].startswith("malformed structure")
    assert ("JVASP-882", "*", "duplicate id") in rejects
    crystals = read_crystals(pq.read_table(out / "structures.parquet"))
    assert "JVASP-816" in crystals.ids and "JVASP-broken" not in crystals.ids
    assert summary["tasks"]["bulk_modulus"]["unit"] == "GPa"
    assert summary["task_counts"]["formation_energy"] == 7 and summary["task_counts"]["mbj_bandgap"] == 5


def test_jarvis_matformer_split_follows_the_published_recipe(jarvis_prepared):
    _, out, _ = jarvis_prepared
    splits, summary = splits_of(out, {"kind": "matformer", "fractions": [0.6, 0.2, 0.2], "seed": 123})
    # rows whose formation energy is not "na", in record order, the ones validation rejects included
    rows = [r["jid"] for r in recorded("jarvis_dft_3d_2021_records.json") if r["formation_energy_peratom"] != "na"]
    assert len(rows) == 9
    rejected_rows = {rows.index("JVASP-broken"), 8}  # malformed structure; second JVASP-882 (duplicate id)
    ids = list(range(len(rows)))
    random.seed(123)
    random.shuffle(ids)
    n = len(rows)
    n_train, n_val, n_test = int(0.6 * n), int(0.2 * n), int(0.2 * n)
    expected = {"train": ids[:n_train], "val": ids[-(n_val + n_test) : -n_test], "test": ids[-n_test:]}
    part = splits["formation_energy"]["fold0"]
    for name, indices in expected.items():
        assert part[name] == [rows[i] for i in indices if i not in rejected_rows], name
    unusable = summary["formation_energy"]["fold0"]["unusable_test_ids"]
    assert unusable == [rows[i] for i in expected["test"] if i in rejected_rows]


def test_matformer_counts_reproduce_the_published_sizes():
    from prdnet.data.splits import matformer_counts, matformer_indices

    assert matformer_counts(55723, (0.8, 0.1, 0.1)) == (44578, 5572, 5572)  # JARVIS formation energy
    assert matformer_counts(55370, (0.8, 0.1, 0.1)) == (44296, 5537, 5537)  # E_hull
    assert matformer_counts(18172, (0.8, 0.1, 0.1)) == (14537, 1817, 1817)  # MBJ gap
    parts = matformer_indices(69239, (60000, 5000, 4239), 123)  # MP-2018.6.1 formation energy
    assert [len(parts[p]) for p in ("train", "val", "test")] == [60000, 5000, 4239]
    ids = list(range(69239))
    random.seed(123)
    random.shuffle(ids)
    assert parts["test"] == ids[-4239:] and parts["val"] == ids[-9239:-4239] and parts["train"] == ids[:60000]
    with pytest.raises(ValueError, match="do not fit"):
        matformer_indices(10, (8, 2, 2), 123)


def test_mp_2018_megnet_snapshot_parsing_and_explicit_counts(fake_jarvis, tmp_path):
    options = {"source": "mp_2018", "cache": str(tmp_path / "megnet.json.gz"),
               "tasks": ["formation_energy", "band_gap", "bulk_modulus", "shear_modulus"]}  # fmt: skip
    summary = prepare_dataset("mp", options, ValidationRules(), tmp_path / "out")
    assert [key for key, _ in fake_jarvis] == ["megnet"]
    rejects = read_rejects(tmp_path / "out")
    assert ("mp-13", "formation_energy", "missing target") in rejects
    assert ("mp-bad", "*", "unknown element: Xx") in rejects
    assert summary["tasks"]["bulk_modulus"]["unit"] == "log10(GPa)"
    split = {"kind": "matformer", "seed": 123, "counts": {"formation_energy": [2, 1, 1], "band_gap": [3, 1, 1],
             "bulk_modulus": [2, 1, 1], "shear_modulus": [2, 1, 1]}}  # fmt: skip
    splits, _ = splits_of(tmp_path / "out", split)
    rows = ["mp-22862", "mp-149", "mp-13", "mp-30"]  # bulk modulus not "na", in record order
    train, val, test = recipe(rows, 2, 1, 1)
    assert splits["bulk_modulus"]["fold0"] == {"train": train, "val": val, "test": test}


# --------------------------------------------------------------------------- MatBench


def test_matbench_structure_task_names_units_and_kinds_follow_the_metadata():
    import matbench as package

    metadata = json.loads((Path(package.__file__).parent / "matbench_v0.1_dataset_metadata.json").read_text())
    structure_tasks = {name for name, m in metadata.items() if m["input_type"] == "structure"}
    assert structure_tasks == set(matbench.STRUCTURE_TASKS)
    for name, task in matbench.STRUCTURE_TASKS.items():
        assert matbench.task_name(metadata[name]["target"]) == task
    assert metadata["matbench_mp_is_metal"]["task_type"] == "classification"
    assert matbench.target_value(True) == 1.0 and matbench.target_value(False) == 0.0
    import numpy as np

    assert matbench.target_value(np.bool_(True)) == 1.0 and matbench.target_value(None) is None


def test_paper_config_names_the_matbench_tasks_as_the_source_does():
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "paper.yaml").read_text())
    matbench_sets = {o["matbench_task"]: o["tasks"] for o in config["datasets"].values() if o["source"] == "matbench"}
    assert matbench_sets == {task: [name] for task, name in matbench.STRUCTURE_TASKS.items()}


# --------------------------------------------------------------------------- the real network


@pytest.mark.network
def test_mp_live_real_api(tmp_path):
    if not mp_live.os.environ.get("MP_API_KEY"):
        pytest.skip("MP_API_KEY not set")
    options = {"source": "mp_live", "material_ids": ["mp-149", "mp-13"], "cache": str(tmp_path / "mp.json.gz")}
    entries = {e.id: e for e in load_source("mp_live", options).entries}
    assert entries["mp-149"].structure.composition.reduced_formula == "Si"
    assert entries["mp-13"].targets["is_metal"] == 1.0


@pytest.mark.network
def test_jarvis_2021_snapshot_has_55723_entries(tmp_path):
    jarvis.download("jarvis_dft_3d_2021", {"cache": str(tmp_path / "jv.json.gz")})
    meta = json.loads((tmp_path / "jv.json.gz.version.json").read_text())
    assert meta["records"] == 55723 and meta["file"] == "jdft_3d-8-18-2021.json"


@pytest.mark.network
def test_matbench_download_into_resources(tmp_path):
    path = matbench.download("matbench_dielectric", tmp_path / "matminer")
    source = load_source("matbench", {"matbench_task": "matbench_dielectric", "matminer_data": str(tmp_path / "matminer")})
    assert path.exists() and len(list(source.entries)) == 4764
