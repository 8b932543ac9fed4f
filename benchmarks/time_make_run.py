"""Wall and CPU time of the default ``make run`` (config/config.yaml), from an empty results folder.

    python benchmarks/time_make_run.py --checkout /path/to/fresh/clone --rounds 3

Each round deletes ``results/`` in the checkout (whose venv must be built: ``make env``), runs
``make run`` there and records its wall time, the CPU time of everything it started (user and
system, from ``getrusage(RUSAGE_CHILDREN)``), the training jobs found and the sum of their own
``wall_time_s`` (what the jobs spent training; the rest is start-up, planning and the serial
steps). Every round, with the command, commit, CPU and the load average before and after, goes to
``benchmarks/results/make_run.json`` (or ``--results``).

    python benchmarks/time_make_run.py --checkout CLONE --imports-only

times instead what every training job pays before its first line of work: a fresh interpreter
of the checkout's venv importing ``prdnet.training`` (``prdnet.train`` before it became a package) (``--rounds`` rounds), and, from one
``python -X importtime`` run, the packages that take longest; to ``benchmarks/results/job_imports.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import Recording, git_commit, load_average, spread  # noqa: E402


def one_round(checkout: Path, log: Path) -> dict:
    shutil.rmtree(checkout / "results", ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = load_average()
    start = time.perf_counter()
    with open(log, "w") as handle:
        status = subprocess.run(["make", "run"], cwd=checkout, stdout=handle, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if status != 0:
        raise SystemExit(f"make run failed ({status}); see {log}")
    jobs = [json.loads(p.read_text()) for p in (checkout / "results").glob("*/runs/**/metrics.json")]
    return {"wall_seconds": wall, "user_seconds": after.ru_utime - before.ru_utime,
            "system_seconds": after.ru_stime - before.ru_stime, "jobs": len(jobs),
            "jobs_wall_time_s": sum(job["wall_time_s"] for job in jobs), "load_before": load,
            "load_after": load_average()}  # fmt: skip


def import_costs(checkout: Path, rounds: int) -> tuple[dict, list[float]]:
    """Wall seconds of ``python -c "import prdnet.training"`` per round, and the cumulative import
    time of the slowest packages (one ``-X importtime`` run)."""
    python = str(checkout / ".venv" / "bin" / "python")
    measured = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([python, "-c", "import prdnet.training"], cwd=checkout, check=True)
        measured.append(time.perf_counter() - start)
    trace = subprocess.run([python, "-X", "importtime", "-c", "import prdnet.training"], cwd=checkout,
                           capture_output=True, text=True, check=True).stderr  # fmt: skip
    cumulative = {}
    for line in trace.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            cumulative[fields[2].strip()] = int(fields[1]) / 1e6
    wanted = ("prdnet.training", "prdnet.train", "torch", "torch_geometric", "torch._dynamo", "torch_geometric.datasets", "pymatgen.core")
    return {name: cumulative.get(name) for name in wanted}, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", required=True, help="a clone of this repository with its venv built")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", help="JSON file to write (default: benchmarks/results/make_run.json)")
    parser.add_argument("--imports-only", action="store_true", help="time a job's imports instead")
    args = parser.parse_args()
    checkout = Path(args.checkout).resolve()
    if args.imports_only:
        recording = Recording("job_imports", 1, args.results)
        recording.start()
        packages, measured = import_costs(checkout, args.rounds)
        figures = {"import_prdnet_train_wall_seconds": spread(measured), "cumulative_import_seconds": packages}
        print(json.dumps(figures, indent=1))
        path = recording.write(figures, measured, checkout_commit=git_commit(checkout)["commit"])
        print(f"written: {path}")
        return
    recording = Recording("make_run", 1, args.results)
    recording.start()
    rounds = []
    for round_ in range(args.rounds):
        rounds.append(one_round(checkout, Path(f"/tmp/make_run_{round_}.log")))
        print(f"round {round_}: {rounds[-1]['wall_seconds']:.1f} s wall, "
              f"{rounds[-1]['user_seconds'] + rounds[-1]['system_seconds']:.0f} CPU s, {rounds[-1]['jobs']} jobs",
              flush=True)
    figures = {key: spread([r[key] for r in rounds]) for key in ("wall_seconds", "user_seconds", "system_seconds",
                                                                   "jobs_wall_time_s")}  # fmt: skip
    figures["jobs"] = rounds[0]["jobs"]
    path = recording.write(figures, rounds, checkout_commit=git_commit(checkout)["commit"], config="config/config.yaml")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
