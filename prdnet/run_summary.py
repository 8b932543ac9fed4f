"""The end of a workflow run in one place: which training jobs finished, which a sanity guard
flagged (:mod:`prdnet.guards`) and which did not finish (failed, or never started because a job
they need failed), each with its log. Printed on the console and written to
``<results_dir>/run_summary.txt`` by the workflow's ``onsuccess`` / ``onerror`` handlers."""

from __future__ import annotations

import json
from pathlib import Path

from prdnet.io import write_text


def job_outcomes(run_dirs: list[Path], log_dirs: list[Path]) -> dict[str, list[str]]:
    """``finished``, ``flagged`` ("<folder>: <flags>") and ``unfinished`` ("<folder> (log: <log>)")
    for the jobs' folders; ``log_dirs`` are the matching log files."""
    outcomes: dict[str, list[str]] = {"finished": [], "flagged": [], "unfinished": []}
    for folder, log in zip(run_dirs, log_dirs):
        metrics = folder / "metrics.json"
        if not metrics.is_file():
            where = f"log: {log}" if log.is_file() else "not started: a job it needs failed"
            outcomes["unfinished"].append(f"{folder} ({where})")
            continue
        outcomes["finished"].append(str(folder))
        flags = json.loads(metrics.read_text()).get("flags") or []
        if flags:
            outcomes["flagged"].append(f"{folder}: {', '.join(flags)}")
    return outcomes


def summary_text(outcomes: dict[str, list[str]]) -> str:
    """The summary as the console and ``run_summary.txt`` show it."""
    total = sum(len(outcomes[k]) for k in ("finished", "unfinished"))
    lines = [f"training jobs: {len(outcomes['finished'])} of {total} finished, {len(outcomes['flagged'])} flagged by a "
             f"sanity guard, {len(outcomes['unfinished'])} unfinished"]  # fmt: skip
    if outcomes["unfinished"]:
        lines += ["unfinished (run the workflow again to retry them; finished jobs are kept):",
                  *[f"  {line}" for line in outcomes["unfinished"]]]  # fmt: skip
    if outcomes["flagged"]:
        lines += ["flagged (their results are in the tables, marked ⚠; see metrics.json flag_details):",
                  *[f"  {line}" for line in outcomes["flagged"]]]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_run_summary(results_dir: str | Path, run_dirs: list[Path], log_dirs: list[Path]) -> str:
    """Write ``<results_dir>/run_summary.txt`` and return its text."""
    text = summary_text(job_outcomes(run_dirs, log_dirs))
    write_text(Path(results_dir) / "run_summary.txt", text)
    return text
