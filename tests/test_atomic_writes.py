"""Atomic writes (prdnet/io.py): a temporary file a killed write left is removed by the next write
of the same file; a saved torch payload has the same bytes every time."""

from __future__ import annotations

import torch

from prdnet.io import orphan_temporaries, write_text, write_torch


def test_the_next_write_of_a_file_removes_the_temporaries_killed_writes_left(tmp_path):
    target = tmp_path / "shard-000.parquet"
    orphans = [tmp_path / ".shard-000.parquet.0123456789ab.tmp", tmp_path / ".shard-000.parquet.ba9876543210.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half-written")
    other = tmp_path / ".shard-001.parquet.0123456789ab.tmp"  # another file's: not ours to remove
    other.write_bytes(b"half-written")
    assert orphan_temporaries(target) == sorted(orphans)
    write_text(target, "done")
    assert target.read_text() == "done"
    assert not any(orphan.exists() for orphan in orphans) and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shard-001.parquet.0123456789ab.tmp", "shard-000.parquet"]


def test_two_saves_of_one_payload_have_the_same_bytes(tmp_path):
    payload = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "target_mean": 1.5}
    write_torch(tmp_path / "a" / "model.pt", payload)
    write_torch(tmp_path / "b" / "model.pt", payload)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    loaded = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert torch.equal(loaded["state_dict"]["w"], payload["state_dict"]["w"]) and loaded["target_mean"] == 1.5
