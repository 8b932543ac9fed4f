"""SHA-256 checksums of the files one workflow step hands to the next: the prepare step's
``structures.parquet`` and the split step's id lists (graph shards keep theirs in their own
``manifest.json``: :func:`prdnet.data.shards.verify_shards`).

The writing step records, in its ``summary.json``, ``checksums`` (each file's path relative to
the summary's folder → the SHA-256 of its bytes) and ``checksums_version``. A reading step checks
the files it reads against them once per job, before reading them (:func:`verify_structures`
in ``prdnet groups``, ``split``, ``featurize`` and ``train``; :func:`verify_split_lists` in
``prdnet train``, the models' and the Dummy's jobs).
A file whose bytes differ, that cannot be read, or that has no checksum in a summary claiming a
``checksums_version`` is a :class:`DataChecksumError` naming the file and the fix.

Older results folders, whose summaries were written before checksums (no
``checksums_version``), and folders without a ``summary.json`` (data written by hand or by a
test) are read unchecked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prdnet.data.splits import SPLIT_NAMES
from prdnet.io import file_digest

CHECKSUMS_VERSION = 1
"""Written as ``checksums_version`` beside ``checksums``; a summary carrying it must hold a
checksum for every file read from its folder."""


class DataChecksumError(ValueError):
    """A data file whose bytes are not those its step wrote, or that cannot be read."""


def with_checksums(summary: dict[str, Any], folder: str | Path, paths: Iterable[str | Path]) -> dict[str, Any]:
    """A copy of ``summary`` with ``checksums`` (each path relative to ``folder``, written with
    ``/``, → the SHA-256 of the file's bytes) and ``checksums_version``."""
    folder = Path(folder)
    checksums = {Path(path).relative_to(folder).as_posix(): file_digest(path) for path in paths}
    return {**summary, "checksums": checksums, "checksums_version": CHECKSUMS_VERSION}


def verify_checksums(summary_path: str | Path, paths: Iterable[str | Path], what: str, fix: str) -> None:
    """Check each file in ``paths`` (inside the folder of ``summary_path``) against the checksum
    the summary recorded. Raises :class:`DataChecksumError` with ``what`` (the kind of file, e.g.
    "split list") and ``fix`` in its message. Nothing is checked when the summary is missing or
    has no ``checksums_version`` (written before checksums)."""
    summary_path = Path(summary_path)
    if not summary_path.is_file():
        return
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataChecksumError(f"{summary_path}, which holds the checksums of the {what} files beside it, cannot be "
                                f"read ({error}); {fix}") from error  # fmt: skip
    if not isinstance(summary, dict) or "checksums_version" not in summary:
        return
    recorded = summary.get("checksums") or {}
    for path in map(Path, paths):
        key = path.relative_to(summary_path.parent).as_posix()
        expected = recorded.get(key)
        if expected is None:
            raise DataChecksumError(f"{what} {path} has no checksum in {summary_path} (checksums_version "
                                    f"{summary['checksums_version']} records one for every file); {fix}")  # fmt: skip
        try:
            found = file_digest(path)
        except OSError as error:
            raise DataChecksumError(f"{what} {path} cannot be read ({error.strerror or error}); {fix}") from error
        if found != expected:
            change = f"has SHA-256 {found[:12]}…, not the {expected[:12]}… recorded in {summary_path}"
            raise DataChecksumError(f"{what} {path} {change}: it was edited or damaged after it was written; {fix}")


def verify_structures(structures_path: str | Path) -> None:
    """Check a dataset's ``structures.parquet`` against the SHA-256 in the ``summary.json``
    beside it (the prepare step writes both)."""
    structures_path = Path(structures_path)
    fix = (f"delete {structures_path} and run the workflow again: its prepare step rewrites it, and the steps after "
           "it run again")
    verify_checksums(structures_path.parent / "summary.json", [structures_path], "crystal table", fix)


def verify_split_lists(split_dir: str | Path) -> None:
    """Check the ``train.txt``, ``val.txt`` and ``test.txt`` of one task and fold
    (``<splits>/<task>/<fold>``) against the SHA-256 in ``<splits>/summary.json``."""
    split_dir = Path(split_dir)
    summary_path = split_dir.parent.parent / "summary.json"
    fix = (f"delete {summary_path} and run the workflow again: its split step rewrites every list of the dataset, "
           "and the training jobs that read them run again")  # fmt: skip
    verify_checksums(summary_path, [split_dir / f"{name}.txt" for name in SPLIT_NAMES], "split list", fix)
