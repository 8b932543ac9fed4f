"""Featurization throughput: our graph shards versus CGCNN-style per-structure neighbour lists.

Prints structures per second for
  (a) ``featurize_dataset`` (periodic k-NN graphs + Parquet shards, ``--workers`` processes)
      on all (or ``--limit``) embedded MP crystals, end to end from structures.parquet;
  (b) the same graph construction in one process (no Parquet, no parallelism);
  (c) pymatgen ``Structure.get_all_neighbors(cutoff)`` plus a per-atom sort to the k nearest,
      the way CGCNN builds its graphs, on a sample of the same crystals;
and the ratios (a)/(c) and (b)/(c), measured in the same run: medians of ``--rounds`` rounds,
each round running (a), (b) and (c) in turn; every round, the command, commit and load average
in ``benchmarks/results/featurize.json``.

    python benchmarks/bench_featurize.py --data ../shared/data/mp/mp_2018_cgcnn36k.jsonl.gz
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prdnet.data.graphs import GraphParams
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.shards import build_graphs, featurize_dataset
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.io import write_parquet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import Recording, spread  # noqa: E402


def cgcnn_style_graphs(structures, params: GraphParams) -> int:
    """CGCNN's graph building: all neighbours within the cutoff per structure, sorted, k kept."""
    edges = 0
    for structure in structures:
        for neighbours in structure.get_all_neighbors(params.cutoff):
            edges += len(sorted(neighbours, key=lambda n: n.nn_distance)[: params.k])
    return edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mp/mp_2018_cgcnn36k.jsonl.gz")
    parser.add_argument("--limit", type=int, default=None, help="crystals to featurize (default: all)")
    parser.add_argument("--sample", type=int, default=1000, help="crystals for the pymatgen reference")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", help="JSON file to write (default: benchmarks/results/featurize.json)")
    args = parser.parse_args()
    params = GraphParams()

    entries, _, read = collect_entries(read_mp_embedded(args.data, args.limit), ["formation_energy"], ValidationRules())
    crystals = entries_to_columns(entries, ["formation_energy"])
    print(f"{read} crystals read, {len(entries)} valid")

    sample_rows = np.sort(np.random.default_rng(0).choice(len(entries), min(args.sample, len(entries)), replace=False))
    sample = crystals.take(sample_rows)
    structures = [entries[r].structure for r in sample_rows]
    recording = Recording("featurize", 1, args.results)
    recording.start()
    rounds = []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            structures_path = Path(folder) / "structures.parquet"
            write_parquet(structures_path, crystals_table(crystals))
            start = time.perf_counter()
            manifest = featurize_dataset(structures_path, Path(folder) / "graphs", params, args.n_shards, args.workers)
            ours = time.perf_counter() - start
        start = time.perf_counter()
        build_graphs(sample, params)
        single = time.perf_counter() - start
        start = time.perf_counter()
        cgcnn_style_graphs(structures, params)
        reference = time.perf_counter() - start
        rounds.append({"featurize_dataset": manifest["crystals"] / ours, "one_process": len(sample_rows) / single,
                       "pymatgen_cgcnn_style": len(structures) / reference})
        print(f"round {round_}: (a) {rounds[-1]['featurize_dataset']:.0f}, (b) {rounds[-1]['one_process']:.0f}, "
              f"(c) {rounds[-1]['pymatgen_cgcnn_style']:.0f} structures/s", flush=True)
    figures = {name: spread([r[name] for r in rounds]) for name in rounds[0]}
    figures["a_over_c"] = spread([r["featurize_dataset"] / r["pymatgen_cgcnn_style"] for r in rounds])
    figures["b_over_c"] = spread([r["one_process"] / r["pymatgen_cgcnn_style"] for r in rounds])
    print(f"(a) featurize_dataset, {args.workers} workers, {manifest['crystals']} crystals: "
          f"{figures['featurize_dataset']['median']:.0f} structures/s")
    print(f"(b) graph construction, 1 process, {len(sample_rows)} crystals: {figures['one_process']['median']:.0f} structures/s")
    print(f"(c) pymatgen get_all_neighbors + sort (CGCNN style), 1 process, {len(structures)} crystals: "
          f"{figures['pymatgen_cgcnn_style']['median']:.0f} structures/s")
    print(f"ratio (a)/(c): {figures['a_over_c']['median']:.1f}x   ratio (b)/(c): {figures['b_over_c']['median']:.1f}x "
          f"(medians of {args.rounds} rounds)")
    path = recording.write(figures, rounds, crystals=manifest["crystals"], sample=len(sample_rows), workers=args.workers)
    print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
