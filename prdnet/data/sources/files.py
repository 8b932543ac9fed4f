"""Reading data files safely: gzip or plain by content, JSON lines one record at a time.

A file that is not there, a folder where a file is expected, or a gzip file that is not one
gives a :class:`DataFileError` naming the file and the config key; a bad line in a JSON-lines
file (not UTF-8, not JSON, not an object) is reported for that line only, so the caller can
turn it into one rejected entry.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

GZIP_MAGIC = b"\x1f\x8b"
JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


class DataFileError(ValueError):
    """A configured data file cannot be read (missing, a folder, or not in the expected format)."""


class MissingDataFileError(DataFileError, FileNotFoundError):
    """A configured data file is not there."""


def check_file(path: str | Path, key: str) -> Path:
    """``path`` as a ``Path`` if it is a readable file; else a :class:`DataFileError` naming ``key``."""
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"config key '{key}': {path} is a folder, not a file")
    if not path.is_file():
        raise MissingDataFileError(f"config key '{key}': file {path} not found (relative paths start at the project root)")
    return path


def is_gzip(path: str | Path) -> bool:
    """Whether the file starts with the gzip magic bytes (its content decides, not its name)."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_binary(path: str | Path) -> IO[bytes]:
    """The file's bytes, decompressed if it is gzipped (whatever its name says)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def read_bytes(path: str | Path, key: str) -> bytes:
    """All bytes of a (possibly gzipped) file; a corrupt gzip file is a :class:`DataFileError`."""
    path = check_file(path, key)
    try:
        with open_binary(path) as handle:
            return handle.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise DataFileError(f"config key '{key}': cannot read {path}: {error}") from error


def read_text(path: str | Path, key: str) -> str:
    """A (possibly gzipped) UTF-8 text file; other encodings are a :class:`DataFileError`."""
    data = read_bytes(path, key)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFileError(f"config key '{key}': {path} is not UTF-8 text ({error})") from error


def json_lines(path: str | Path, key: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(line number, record, None)`` for each non-blank line that is a JSON object, and
    ``(line number, None, reason)`` for one that is not UTF-8, not JSON or not an object."""
    path = check_file(path, key)
    try:
        with open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                yield (number, *parse_json_object(raw))
    except (OSError, EOFError) as error:
        raise DataFileError(f"config key '{key}': cannot read {path}: {error}") from error


def parse_json_object(raw: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    """One JSON object from a line's bytes, or ``(None, reason)``."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return None, f"malformed record: not UTF-8 ({error.reason} at byte {error.start})"
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        return None, f"malformed record: invalid JSON ({error.msg})"
    if not isinstance(record, dict):
        return None, f"malformed record: a JSON {JSON_TYPES.get(type(record), 'value')}, not an object"
    return record, None
