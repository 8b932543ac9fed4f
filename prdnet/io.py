"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and a killed job leaves either the old file or
none, so Snakemake re-runs it. A temporary file a killed write left behind
(``.<name>.<12 hex>.tmp``) is removed by the next write of the same file. The temporary file is created with mode 0666 filtered by the
process's umask (as ``open`` would), not ``mkstemp``'s 0600, so results on a shared file system
are readable by the team (0644 under the usual umask 022).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
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


def orphan_temporaries(path: str | Path) -> list[Path]:
    """The temporary files of :func:`create_temporary` left beside ``path`` by writes that were
    killed before their rename (``.<name>.<12 hex>.tmp``; one writer per file, so none is live
    when the file is written again)."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{12}}\.tmp")
    if not path.parent.is_dir():
        return []
    return sorted(candidate for candidate in path.parent.iterdir() if pattern.fullmatch(candidate.name))


def remove_orphan_temporaries(path: str | Path) -> None:
    """Delete the temporary files killed writes of ``path`` left (:func:`orphan_temporaries`)."""
    for orphan in orphan_temporaries(path):
        orphan.unlink(missing_ok=True)


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


class WriteError(OSError):
    """A file could not be written: the message names the file, the cause and the fix."""


def write_error(path: Path, error: OSError) -> WriteError:
    """The error of a failed write of ``path``, with its cause in words and the fix."""
    if error.errno in _FULL:
        cause = (f"no space left for it ({error.strerror}) on the file system holding {path.parent}: free space there, "
                 "or point results_dir at another disk, and run again (finished work is kept)")
    elif error.errno in _DENIED:
        cause = (f"no permission to write in {path.parent} ({error.strerror}): make it writable for this user, or point "
                 "results_dir elsewhere, and run again")
    elif error.errno in (errno.ENOTDIR, errno.EEXIST):
        cause = (f"a part of the path {path.parent} is a file, not a folder ({error.strerror}): move that file away or "
                 "choose another results_dir")
    else:
        cause = f"{error.strerror or error}"
    failure = WriteError(f"cannot write {path}: {cause}")
    failure.errno = error.errno  # its message stays ours (str() would prefix strerror and filename)
    return failure


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.
    Temporary files of earlier, killed writes of ``path`` are removed first. An ``OSError`` of
    the write (disk full, no permission, a file where a folder should be) is raised as a
    :class:`WriteError` naming the file, the cause and the fix."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphan_temporaries(path)
        temporary = create_temporary(path)
    except OSError as error:
        raise write_error(path, error) from error
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise write_error(path, error) from error
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_torch(path: str | Path, payload: Any) -> int:
    """``torch.save`` a payload atomically and return its size in bytes. It is serialized in
    memory first: saved to a file, torch names the archive's folder after the file, so the
    temporary file's random name would make the bytes of two identical saves differ."""
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())
    return buffer.getbuffer().nbytes


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
