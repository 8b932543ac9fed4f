"""What every benchmark in this folder records beside its figures, and where it writes them.

A benchmark's figures are only worth quoting with the conditions they were taken under: one JSON
file per benchmark run, ``benchmarks/results/<name>.json`` by default (``--results`` to change),
holding

* ``figures``: the benchmark's own summary (medians, ratios, spreads),
* ``rounds``: every round's raw measurements, not only the best,
* ``command``: the command line; ``commit`` (and whether the tree had uncommitted changes);
  ``torch``, ``python``, ``cpu`` (model name), ``cpu_count``, ``threads``;
* ``load_before`` / ``load_after``: the 1, 5 and 15-minute load averages just before the first
  round and just after the last (a timing taken at load above the core count is not a figure),
* ``started`` / ``finished`` (UTC, ISO 8601).

The README's speed figures and the cost estimate are computed from these files
(``benchmarks/readme_figures.py``); ``tests/test_benchmark_figures.py`` checks that they match.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prdnet.io import write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
"""Default folder of the result files."""


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages of this machine."""
    return [round(value, 2) for value in os.getloadavg()]


def cpu_model() -> str:
    """The processor's model name (:func:`prdnet.training.cost.cpu_name`: what the jobs record too)."""
    from prdnet.training.cost import cpu_name

    return cpu_name()


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    """The commit of the repository at ``root`` (this one by default) and whether tracked files
    differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_changes": None}
    return {"commit": commit.stdout.strip(), "uncommitted_changes": bool(status.stdout.strip())}


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and (max − min) / median of some measurements."""
    median = statistics.median(values)
    return {
        "median": median,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / median if median else float("nan"),
        "n": len(values),
    }


class Recording:
    """One benchmark run: ``start()`` before the first round, ``write(...)`` after the last.

    Args:
        name: the benchmark's name, the file name of its results (``<name>.json``).
        threads: torch threads the measurements ran on.
        results: the JSON file to write (default ``benchmarks/results/<name>.json``).
    """

    def __init__(self, name: str, threads: int, results: str | Path | None = None) -> None:
        self.name = name
        self.threads = threads
        self.path = Path(results) if results else RESULTS / f"{name}.json"
        self.load_before: list[float] | None = None
        self.started: str | None = None

    def start(self) -> None:
        self.load_before = load_average()
        self.started = _now()

    def write(self, figures: dict[str, Any], rounds: list[Any], **extra: Any) -> Path:
        """Write the results file (atomically) and return its path."""
        import torch

        record = {
            "benchmark": self.name,
            "command": [Path(sys.executable).name, *sys.argv],
            **git_commit(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "threads": self.threads,
            "load_before": self.load_before,
            "load_after": load_average(),
            "started": self.started,
            "finished": _now(),
            **extra,
            "figures": figures,
            "rounds": rounds,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps(record, indent=1, default=str) + "\n")
        return self.path


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
