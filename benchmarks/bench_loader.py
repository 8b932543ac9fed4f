"""Loader throughput: how fast a training job turns graph shards into batches, against what a GPU
consumes.

Prints crystals per second, one process, for
  (a) reading the shards (``read_shards``: Parquet → flat columns);
  (b) building one torch_geometric ``Data`` per crystal (``select_data``: column slices);
  (c) collating training batches (the training job's loader: ``EpochBatchSampler`` order,
      batches of ``--batch-size``), also with ``--workers`` loader processes;
  (r) the reference, measured in the same run: building each ``Data`` from a pymatgen
      ``Structure`` on the fly (``structure_to_data``: neighbour search per crystal, the way a
      loader without shards works), on a sample;
and the ratios to (r) and to a GPU's appetite: Matformer trains 44,578 JARVIS crystals in 64 s per
epoch on an RTX A6000 (Matformer paper, NeurIPS 2022, Table 6), ≈ 700 crystals/s.

    python benchmarks/bench_loader.py --data ../shared/data/mp/mp_2018_cgcnn36k.jsonl.gz --limit 5000
    python benchmarks/bench_loader.py --shards results/mp_2018_cgcnn36k/graphs/*/shard-*.parquet
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from torch_geometric.loader import DataLoader

from prdnet.data.graphs import GraphParams
from prdnet.data.loader import select_data, structure_to_data
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.shards import featurize_dataset, read_shards
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.distributed import EpochBatchSampler
from prdnet.io import write_parquet

GPU_CRYSTALS_PER_S = 44_578 / 64
"""Matformer on an RTX A6000: 64 s per epoch of 44,578 JARVIS training crystals."""
TASK = "formation_energy"


def best_rate(count: int, run, repeats: int) -> float:
    """count / (best wall time of ``repeats`` calls of ``run``)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / min(times)


def collate_all(data, batch_size: int, workers: int) -> int:
    sampler = EpochBatchSampler(len(data), batch_size, seed=0)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=workers)
    return sum(batch.num_graphs for batch in loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mp/mp_2018_cgcnn36k.jsonl.gz")
    parser.add_argument("--limit", type=int, default=5000, help="crystals to featurize (without --shards)")
    parser.add_argument("--shards", nargs="*", default=None, help="existing graph shards (skips featurization)")
    parser.add_argument("--sample", type=int, default=300, help="crystals for the on-the-fly reference")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="loader processes for the second (c)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = GraphParams()

    entries, _, _ = collect_entries(read_mp_embedded(args.data, args.limit if not args.shards else args.sample),
                                    [TASK], ValidationRules())  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        shards = args.shards
        if not shards:
            crystals = entries_to_columns(entries, [TASK])
            write_parquet(Path(folder) / "structures.parquet", crystals_table(crystals))
            manifest = featurize_dataset(Path(folder) / "structures.parquet", Path(folder) / "graphs", params, 4, 2)
            shards = [Path(folder) / "graphs" / name for name in manifest["shards"]]
        crystals, graphs = read_shards(shards)
        count = len(crystals.ids)
        print(f"{count} crystals in {len(shards)} shards; best of {args.repeats} passes, one process")
        rates = {
            "(a) read shards": best_rate(count, lambda: read_shards(shards), args.repeats),
            "(b) build Data": best_rate(count, lambda: select_data(crystals, graphs, TASK), args.repeats),
        }
        data = select_data(crystals, graphs, TASK)
        rates[f"(c) collate batches of {args.batch_size}"] = best_rate(
            count, lambda: collate_all(data, args.batch_size, 0), args.repeats)
        if args.workers:
            rates[f"(c) collate, {args.workers} loader workers"] = best_rate(
                count, lambda: collate_all(data, args.batch_size, args.workers), args.repeats)
        sample = entries[: args.sample]
        reference = best_rate(len(sample), lambda: [structure_to_data(e.structure, params=params) for e in sample], 1)
    for name, rate in rates.items():
        print(f"{name:<36} {rate:>10,.0f} crystals/s   {rate / reference:>7.1f}x (r)   "
              f"{rate / GPU_CRYSTALS_PER_S:>6.1f}x GPU")
    print(f"{'(r) structure_to_data on the fly':<36} {reference:>10,.0f} crystals/s")
    print(f"{'GPU appetite (Matformer, A6000)':<36} {GPU_CRYSTALS_PER_S:>10,.0f} crystals/s")
    print("(a) and (b) run once per job, (c) every epoch")


if __name__ == "__main__":
    main()
