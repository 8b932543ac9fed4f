"""Every graph shard's SHA-256 is in its manifest and checked whenever a shard is read: a flipped
byte anywhere, or a truncated file, is named with the fix, by every reader a job uses."""

from __future__ import annotations

import json

import pytest

from prdnet.data.graphs import GraphParams
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.shards import CorruptShardError, check_shard_recipe, featurize_dataset, read_shards
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.io import file_digest, write_parquet


@pytest.fixture
def shards(mp_embedded_path, tmp_path):
    entries, _, _ = collect_entries(read_mp_embedded(mp_embedded_path, limit=24), ["band_gap"], ValidationRules())
    write_parquet(tmp_path / "structures.parquet", crystals_table(entries_to_columns(entries, ["band_gap"])))
    manifest = featurize_dataset(tmp_path / "structures.parquet", tmp_path / "graphs", GraphParams(), n_shards=2)
    return [tmp_path / "graphs" / name for name in manifest["shards"]]


def test_the_manifest_records_each_shards_sha256(shards):
    manifest = json.loads((shards[0].parent / "manifest.json").read_text())
    assert manifest["checksums"] == {path.name: file_digest(path) for path in shards}
    read_shards(shards)  # intact: read without complaint


@pytest.mark.parametrize("where", [0.1, 0.35, 0.5, 0.75, 0.97])
def test_a_flipped_byte_anywhere_in_a_shard_is_named_with_the_fix(shards, where):
    data = bytearray(shards[1].read_bytes())
    offset = int(where * len(data))
    data[offset : offset + 4] = bytes(b ^ 0xFF for b in data[offset : offset + 4])
    shards[1].write_bytes(bytes(data))
    for reader in (read_shards, lambda paths: check_shard_recipe(paths, GraphParams())):
        with pytest.raises(CorruptShardError, match=rf"graph shard {shards[1]} has SHA-256 .* delete it and re-run the "
                                                    "featurize step"):  # fmt: skip
            reader(shards)


def test_a_truncated_shard_is_named_by_the_model_jobs_recipe_check_too(shards):
    shards[0].write_bytes(shards[0].read_bytes()[:100])
    with pytest.raises(CorruptShardError, match=rf"graph shard {shards[0]} .*corrupt or half-written"):
        check_shard_recipe(shards, GraphParams())
    (shards[0].parent / "manifest.json").unlink()  # no checksum to compare: the reader's own error names it
    with pytest.raises(CorruptShardError, match=rf"graph shard {shards[0]} cannot be read"):
        check_shard_recipe(shards, GraphParams())
