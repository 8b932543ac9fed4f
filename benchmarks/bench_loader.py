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
and the ratios to (r) and to a GPU's appetite (medians of ``--repeats`` passes; every pass, the
command, commit and load average in ``benchmarks/results/loader.json``): Matformer trains 44,578 JARVIS crystals in 64 s per
epoch on an RTX A6000 (Matformer paper, NeurIPS 2022, Table 6), ≈ 700 crystals/s.

    python benchmarks/bench_loader.py --data ../shared/data/mp/mp_2018_cgcnn36k.jsonl.gz --limit 5000
    python benchmarks/bench_loader.py --shards results/mp_2018_cgcnn36k/graphs/*/shard-*.parquet
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from torch_geometric.loader import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import Recording, spread  # noqa: E402

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


def rates(count: int, run, repeats: int) -> list[float]:
    """count / (wall time) of each of ``repeats`` calls of ``run``."""
    measured = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        measured.append(count / (time.perf_counter() - start))
    return measured


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
    parser.add_argument("--results", help="JSON file to write (default: benchmarks/results/loader.json)")
    args = parser.parse_args()
    recording = Recording("loader", 1, args.results)
    recording.start()
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
        print(f"{count} crystals in {len(shards)} shards; median of {args.repeats} passes, one process")
        measured = {
            "(a) read shards": rates(count, lambda: read_shards(shards), args.repeats),
            "(b) build Data": rates(count, lambda: select_data(crystals, graphs, TASK), args.repeats),
        }
        data = select_data(crystals, graphs, TASK)
        measured[f"(c) collate batches of {args.batch_size}"] = rates(
            count, lambda: collate_all(data, args.batch_size, 0), args.repeats)
        if args.workers:
            measured[f"(c) collate, {args.workers} loader workers"] = rates(
                count, lambda: collate_all(data, args.batch_size, args.workers), args.repeats)
        sample = entries[: args.sample]
        measured["(r) structure_to_data on the fly"] = rates(
            len(sample), lambda: [structure_to_data(e.structure, params=params) for e in sample], args.repeats)
    reference = statistics.median(measured["(r) structure_to_data on the fly"])
    figures = {name: {"crystals_per_s": spread(values), "x_reference": statistics.median(values) / reference,
                      "x_gpu_appetite": statistics.median(values) / GPU_CRYSTALS_PER_S}
               for name, values in measured.items()}
    for name, values in measured.items():
        if name.startswith("(r)"):
            continue
        rate = statistics.median(values)
        print(f"{name:<36} {rate:>10,.0f} crystals/s   {rate / reference:>7.1f}x (r)   "
              f"{rate / GPU_CRYSTALS_PER_S:>6.1f}x GPU")
    print(f"{'(r) structure_to_data on the fly':<36} {reference:>10,.0f} crystals/s")
    print(f"{'GPU appetite (Matformer, A6000)':<36} {GPU_CRYSTALS_PER_S:>10,.0f} crystals/s")
    print("(a) and (b) run once per job, (c) every epoch")
    figures["gpu_appetite_crystals_per_s"] = GPU_CRYSTALS_PER_S
    path = recording.write(figures, [{"name": name, "crystals_per_s": values} for name, values in measured.items()],
                           crystals=count, batch_size=args.batch_size, workers=args.workers)
    print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
