"""Time the leakage audit of the whole embedded Materials Project set (issue 22: "audited in minutes on 2 cores").

Once: ``prdnet prepare`` reads and validates all 36,738 crystals into a scratch folder. Then, per
round, as whole processes: the ``prdnet groups`` step (spglib symmetry and prototype per crystal,
StructureMatcher within each reduced formula; ``--workers``) and the ``prdnet split`` step (random
80/10/10 split and its audit), and, as the reference measured in the same run, ``prdnet prepare``
itself. Quiet machine only: the load average before and after is recorded. Writes
``benchmarks/results/leakage_audit.json`` (:mod:`benchmarks.record`) with the median and spread of
each, the audit / prepare ratio and the audit's counts.

    python benchmarks/time_leakage_audit.py                  # 3 rounds, 2 workers
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import Recording, spread  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mp" / "mp_2018_cgcnn36k.jsonl.gz"
OPTIONS = {"source": "mp_2018_cgcnn36k", "path": str(DATA), "tasks": ["formation_energy", "band_gap"],
           "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": 42}}  # fmt: skip
VALIDATION = {"min_distance": 0.5, "max_nearest_neighbor": 8.0, "max_atomic_number": 100, "max_atoms": 500}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    prdnet = str(Path(sys.executable).parent / "prdnet")
    recording = Recording("leakage_audit", threads=args.workers, results=args.results)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        prepare = [prdnet, "prepare", "--dataset", "mp", "--options", json.dumps(OPTIONS), "--validation",
                   json.dumps(VALIDATION), "--out-dir", str(out)]  # fmt: skip
        subprocess.run(prepare, check=True, capture_output=True)
        groups = [prdnet, "groups", "--structures", str(out / "structures.parquet"), "--workers", str(args.workers),
                  "--out", str(out / "crystal_groups.parquet")]  # fmt: skip
        split = [prdnet, "split", "--structures", str(out / "structures.parquet"), "--official-folds",
                 str(out / "official_folds.json"), "--groups", str(out / "crystal_groups.parquet"), "--split",
                 json.dumps(OPTIONS["split"]), "--out-dir", str(out / "splits")]  # fmt: skip
        recording.start()
        rounds = []
        for _ in range(args.rounds):
            rounds.append({"groups_s": timed(groups), "split_s": timed(split), "prepare_s": timed(prepare)})
        audit = json.loads((out / "splits" / "leakage.json").read_text())
        crystals = json.loads((out / "summary.json").read_text())["accepted"]
    audit_times = [r["groups_s"] + r["split_s"] for r in rounds]
    figures = {
        "crystals": crystals,
        "audit_s": spread(audit_times),
        "groups_s": spread([r["groups_s"] for r in rounds]),
        "split_s": spread([r["split_s"] for r in rounds]),
        "prepare_s": spread([r["prepare_s"] for r in rounds]),
        "audit_over_prepare": spread([a / r["prepare_s"] for a, r in zip(audit_times, rounds)]),
        "leakage": audit["splits"],
    }
    path = recording.write(figures, rounds=rounds, settings={"rounds": args.rounds, "workers": args.workers})
    print(f"{crystals} crystals: audit median {statistics.median(audit_times):.0f} s "
          f"({min(audit_times):.0f}-{max(audit_times):.0f}), {figures['audit_over_prepare']['median']:.2f} x prepare; {path}")


if __name__ == "__main__":
    main()
