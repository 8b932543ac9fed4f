"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and a killed job leaves either the old file or
none, so Snakemake re-runs it. The temporary file is created with mode 0666 filtered by the
process's umask (as ``open`` would), not ``mkstemp``'s 0600, so results on a shared file system
are readable by the team (0644 under the usual umask 022).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def create_temporary(path: Path, attempts: int = 100) -> Path:
    """Create an empty, new temporary file beside ``path`` with mode 0o666 & ~umask.

    ``O_CREAT | O_EXCL`` makes the name ours alone (as ``mkstemp`` does); the kernel applies the
    umask (and a default ACL, where the folder has one) to the requested 0o666.
    """
    for _ in range(attempts):
        candidate = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            handle = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(handle)
        return candidate
    raise FileExistsError(f"no free temporary name beside {path} after {attempts} attempts")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = create_temporary(path)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: str | Path, payload: Any) -> None:
    """Write JSON (sorted keys, indented) atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_parquet(path: str | Path, table: pa.Table, metadata: dict[str, Any] | None = None) -> None:
    """Write a Parquet file atomically; ``metadata`` is stored as JSON in the schema metadata."""
    if metadata:
        encoded = {key.encode(): json.dumps(value, sort_keys=True).encode() for key, value in metadata.items()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **encoded})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary, compression="zstd")


def decode_metadata(schema: pa.Schema) -> dict[str, Any]:
    """The JSON entries of a schema's metadata (as written by :func:`write_parquet`)."""
    decoded = {}
    for key, value in (schema.metadata or {}).items():
        try:
            decoded[key.decode()] = json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return decoded


def read_parquet_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata written by :func:`write_parquet`, read from the file's schema only."""
    return decode_metadata(pq.read_schema(path))
