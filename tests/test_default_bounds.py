"""A user's regression target given no bounds is held to a default range from its own values: a
value wrong by orders of magnitude (1e30) is set aside to rejects.csv with a reason naming
`targets.<task>.bounds` and the range, which summary.json states; ordinary heavy-tailed
materials data (band gaps with many zeros, bulk moduli over 3 orders of magnitude, magnetizations)
keeps every row."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure

from prdnet.data.prepare import prepare_dataset
from prdnet.data.validate import ValidationRules, default_bounds


def write_table(path, targets: dict[str, list[float | None]]) -> None:
    """A JSON-lines table of rock-salt crystals (lattice 5.0 Å + 0.001 Å per row), one column per target."""
    rows = len(next(iter(targets.values())))
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            structure = Structure(Lattice.cubic(5.0 + 0.001 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            row = {"id": f"c-{i}", "structure": structure.as_dict()}
            row.update({name: column[i] for name, column in targets.items()})
            handle.write(json.dumps(row) + "\n")


def prepare(tmp_path, targets: dict[str, list[float | None]], specs: dict | None = None, rules=ValidationRules()):
    """Prepare the table; return summary.json, the rejects by (id, task) and the accepted crystal ids."""
    write_table(tmp_path / "table.jsonl", targets)
    specs = specs or {name: {"column": name, "unit": "eV"} for name in targets}
    options = {"source": "table", "path": str(tmp_path / "table.jsonl"), "targets": specs, "tasks": list(specs)}
    prepare_dataset("own", options, rules, tmp_path / "own")
    summary = json.loads((tmp_path / "own" / "summary.json").read_text())
    with open(tmp_path / "own" / "rejects.csv", encoding="utf-8") as handle:
        rejects = {(row["id"], row["task"]): row["reason"] for row in csv.DictReader(handle)}
    ids = pq.read_table(tmp_path / "own" / "structures.parquet").column("id").to_pylist()
    return summary, rejects, ids


ORDINARY = [round(-3.0 + 0.1 * i, 2) for i in range(40)]


def test_a_planted_1e30_is_rejected_naming_the_key_and_the_range_that_summary_json_states(tmp_path):
    summary, rejects, ids = prepare(tmp_path, {"e_form": ORDINARY[:20] + [1e30] + ORDINARY[20:]})
    low, high = summary["default_target_bounds"]["e_form"]
    assert low < -3.0 and 0.9 < high < 1e6
    reason = rejects[("c-20", "*")]  # its only target: the crystal has no usable target left
    assert reason == ("no usable target for any task (e_form: implausible target: 1e+30 outside "
                      f"[{low:.6g}, {high:.6g}], the default range for a target without bounds (its values' 5th "
                      "to 95th percentile, widened 100× its width each side); set targets.e_form.bounds to "
                      "replace it)")  # fmt: skip
    assert len(rejects) == 1 and "c-20" not in ids and len(ids) == 40
    assert summary["rejected_by_reason"] == {"no usable target for any task": 1}
    # index-based split recipes (matformer) still see the row where the source had it
    assert summary["split_candidates"]["e_form"] == {"count": 41, "rejected": [[20, "c-20"]]}


def test_a_crystal_with_another_usable_target_loses_only_the_implausible_one(tmp_path):
    summary, rejects, ids = prepare(tmp_path, {"e_form": [1e30] + ORDINARY, "gap": [1.0] * 41})
    assert list(rejects) == [("c-0", "e_form")]
    assert rejects[("c-0", "e_form")].startswith("implausible target: 1e+30 outside [")
    assert "set targets.e_form.bounds to replace it" in rejects[("c-0", "e_form")]
    assert "c-0" in ids and summary["task_counts"] == {"e_form": 40, "gap": 41}
    assert summary["default_target_bounds"]["gap"] is None  # all equal: no range to derive, nothing rejected


def test_ordinary_heavy_tailed_columns_keep_every_row(tmp_path):
    rng = np.random.default_rng(0)
    band_gaps = np.concatenate([np.zeros(300), rng.uniform(0.1, 6.0, 190), [9.5, 10.0, 10.0, 10.3, 12.0] * 2])
    bulk_moduli = 10 ** rng.normal(2.0, 0.5, 500)  # GPa; with the three below, 0.8 to 3,400: over 3 orders of magnitude
    bulk_moduli[:3] = [0.8, 1.5, 950.0]
    summary, rejects, ids = prepare(tmp_path, {"band_gap": band_gaps.tolist(), "bulk_modulus": bulk_moduli.tolist()})
    assert rejects == {} and len(ids) == 500
    assert summary["default_target_bounds"]["band_gap"][1] > 12.0


def test_the_embedded_mp_columns_keep_every_row(mp_embedded_path):
    with gzip.open(mp_embedded_path, "rt") as handle:
        rows = [json.loads(line) for line in handle]
    for column in ("formation_energy_per_atom", "band_gap", "total_magnetization", "efermi", "volume"):
        values = np.array([row[column] for row in rows if row.get(column) is not None], dtype=float)
        low, high = default_bounds(values)
        assert low <= values.min() and values.max() <= high, column


def test_a_column_of_mostly_zeros_keeps_its_non_zero_values_and_still_rejects_1e30(tmp_path):
    zeros = [0.0] * 95
    summary, rejects, _ = prepare(tmp_path, {"gap": zeros + [0.3, 1.2, 2.5, 4.0, 9.5]})
    assert rejects == {} and summary["default_target_bounds"]["gap"] == pytest.approx([-400.0, 404.0])
    _, rejects, _ = prepare(tmp_path, {"gap": zeros + [0.3, 1.2, 2.5, 4.0, 1e30]})
    assert list(rejects) == [("c-99", "*")]


def test_few_values_give_no_default_range():
    assert default_bounds(np.array([1.0, 1e30])) is None
    assert default_bounds(np.array([0.0] * 50 + [1.0, 1e30])) is None  # only two values off the common one


def test_given_bounds_replace_the_default_and_open_bounds_turn_it_off(tmp_path):
    values = {"e_form": ORDINARY + [1e30]}
    summary, rejects, _ = prepare(tmp_path, values, {"e_form": {"column": "e_form", "bounds": [None, None]}})
    assert rejects == {} and summary["default_target_bounds"] == {}
    summary, rejects, _ = prepare(tmp_path, values, rules=ValidationRules(target_bounds={"e_form": [-5.0, 5.0]}))
    assert summary["default_target_bounds"] == {}
    assert rejects[("c-40", "*")].endswith("outside [-5.0, 5.0] (validation.target_bounds.e_form))")
    labels = {"label": {"column": "label", "kind": "classification"}}
    summary, rejects, _ = prepare(tmp_path, {"label": [0.0] * 40 + [1.0]}, labels)
    assert rejects == {} and summary["default_target_bounds"] == {}  # class labels have their own check
