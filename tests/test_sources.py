"""Sources: the embedded MP file and MatBench through the real matbench package."""

from __future__ import annotations

import pytest

from prdnet.data.sources import available_sources, load_source


def test_builtin_sources_are_registered():
    assert {"mp_2018_cgcnn36k", "matbench"} <= set(available_sources())


def test_unknown_source_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown source 'nope'"):
        load_source("nope", {})


def test_embedded_mp_has_known_values(mp_embedded_path):
    source = load_source("mp_2018_cgcnn36k", {"path": str(mp_embedded_path)})
    assert set(source.tasks) == {"formation_energy", "band_gap", "is_metal"}
    assert source.tasks["is_metal"].kind == "classification"
    wanted = {"mp-149", "mp-13"}
    found = {}
    for entry in source.entries:
        if entry.id in wanted:
            found[entry.id] = entry
            if len(found) == len(wanted):
                break
    silicon, iron = found["mp-149"], found["mp-13"]
    assert silicon.structure.composition.reduced_formula == "Si"
    assert silicon.targets["band_gap"] == pytest.approx(0.623, abs=1e-3)
    assert silicon.targets["is_metal"] == 0.0
    assert iron.targets["is_metal"] == 1.0


def test_missing_embedded_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="datasets.<name>.path"):
        load_source("mp_2018_cgcnn36k", {"path": str(tmp_path / "absent.jsonl.gz")})


def test_matbench_phonons_loads_offline_with_official_folds(matminer_data):
    source = load_source("matbench", {"matbench_task": "matbench_phonons", "matminer_data": str(matminer_data)})
    assert list(source.tasks) == ["last_phdos_peak"]
    assert source.tasks["last_phdos_peak"].unit == "cm^-1"
    entries = list(source.entries)
    assert len(entries) == 1265 and entries[0].id == "mb-phonons-0001"
    assert sorted(len(ids) for ids in source.folds.values()) == [253] * 5


@pytest.mark.network
def test_matbench_task_not_on_disk_downloads(tmp_path):
    source = load_source("matbench", {"matbench_task": "matbench_perovskites", "matminer_data": str(tmp_path)})
    assert len(list(source.entries)) == 18928
