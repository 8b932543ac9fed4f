"""PRDNet's attention layers before and after issue 13: forward + backward time and peak memory.

Prints one table, measured in one run on this machine (CPU, ``--threads`` torch threads): for
PRDNet's ``paper`` and ``reference`` presets, the layers as they were
(benchmarks/reference_prdnet.py), as they are (prdnet/models/prdnet.py), and as they are with
``checkpoint_layers: true``; Matformer's ``paper`` preset for comparison. Each configuration runs
in its own process (so its peak resident memory, ``ru_maxrss``, is its own), beside a *bare*
process that loads the same batch and builds no model; memory is reported above the bare one.
Configurations are interleaved: each round starts one process per configuration in turn, which
does a warm-up pass and then one timed pass (training mode, loss = mean squared prediction);
the table shows the median over the rounds and its spread, and the ratio to Matformer is the
median of the ratios within each round. Every round, the command, commit, CPU, threads and the
load average before and after go to ``benchmarks/results/attention.json`` (:mod:`record`).
Predictions of the timed pass (same seed, same weights) are
compared between before and after: largest |after − before| / largest |before|.

    python benchmarks/bench_attention.py                          # batch of 16, 3 rounds
    python benchmarks/bench_attention.py --batch-size 64 --rounds 3
    python benchmarks/bench_attention.py --configs paper:before paper:after matformer
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import Recording, spread  # noqa: E402

CONFIGS = (
    "bare",
    "paper:before",
    "paper:after",
    "paper:checkpoint",
    "reference:before",
    "reference:after",
    "reference:checkpoint",
    "matformer",
)
"""``<prdnet preset>:<implementation>``, ``matformer`` (its paper preset) or ``bare``."""


def embedded_batch(spec: dict, batch_size: int, max_atoms: int, pool: int) -> Batch:
    """``batch_size`` embedded MP crystals (seeded draw) as one batch, graphs built with the
    recipe of the model ``spec``."""
    from prdnet.audit import embedded_data_path, sample_structures
    from prdnet.data.loader import structure_to_data
    from prdnet.data.recipes import graph_recipe_for

    recipe = graph_recipe_for(spec)
    crystals = sample_structures(embedded_data_path(), batch_size, max_atoms, pool=pool)
    return Batch.from_data_list([structure_to_data(s, params=recipe, dtype=torch.float32) for _, s, _ in crystals])


def model_spec(config: str) -> dict:
    """The model spec of a configuration (``bare`` reads PRDNet's paper graph)."""
    if config == "matformer":
        return {"name": "matformer", "preset": "paper"}
    preset, _, implementation = config.partition(":")
    preset = "paper" if config == "bare" else preset
    backbone = {"checkpoint_layers": True} if implementation == "checkpoint" else {}
    return {"name": "prdnet", "preset": preset, "hyperparameters": {"backbone": backbone}}


def worker(config: str, args: argparse.Namespace) -> dict:
    """Run one configuration in this process: warm-up pass, timed pass, peak RSS."""
    from prdnet.models import build_model, count_parameters

    torch.set_num_threads(args.threads)
    spec = model_spec(config)
    batch = embedded_batch(spec, args.batch_size, args.max_atoms, args.pool)
    result = {"config": config, "atoms": batch.num_nodes, "edges": int(batch.edge_index.shape[1])}
    if config != "bare":
        torch.manual_seed(0)
        model = build_model(spec, "regression")
        if config.endswith(":before"):
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from reference_prdnet import reference_like

            model = reference_like(model)
        model.train()
        result["parameters"] = count_parameters(model)
        for _ in range(2):  # warm-up, then the timed pass
            model.zero_grad(set_to_none=True)
            torch.manual_seed(1)  # the same dropout masks in every pass and implementation
            start = time.perf_counter()
            prediction = model(batch)
            prediction.square().mean().backward()
            result["seconds"] = time.perf_counter() - start
        torch.save(prediction.detach(), args.prediction_file)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return result


def run_worker(config: str, args: argparse.Namespace, folder: Path, round_: int) -> dict:
    prediction = folder / f"{config.replace(':', '-')}-{round_}.pt"
    command = [sys.executable, __file__, "--worker", config, "--prediction-file", str(prediction),
               "--batch-size", str(args.batch_size), "--max-atoms", str(args.max_atoms),
               "--pool", str(args.pool), "--threads", str(args.threads)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"worker {config} failed:\n{completed.stderr[-4000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["prediction"] = prediction if config != "bare" else None
    print(f"  round {round_} {config}: {result.get('seconds', float('nan')):.2f} s, "
          f"{result['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    return result


def relative_difference(after: Path, before: Path) -> float:
    new, old = torch.load(after), torch.load(before)
    return float((new - old).abs().max() / old.abs().max())


def summarise(configs: list[str], rounds: list[list[dict]]) -> dict:
    """Per configuration: median seconds and their spread over the rounds, × Matformer (the
    median of the per-round ratios: both timed in the same round), peak RSS above the bare
    process (medians), and the predictions' largest relative difference against ``:before``."""
    by_config = {c: [next(run for run in round_ if run["config"] == c) for round_ in rounds] for c in configs}
    bare = spread([run["peak_rss_mib"] for run in by_config["bare"]])["median"]
    figures: dict = {"bare_peak_rss_mib": bare, "configs": {}}
    for config in configs:
        if config == "bare":
            continue
        runs = by_config[config]
        row = {
            "atoms": runs[0]["atoms"],
            "edges": runs[0]["edges"],
            "parameters": runs[0]["parameters"],
            "seconds": spread([run["seconds"] for run in runs]),
            "peak_rss_above_bare_mib": spread([run["peak_rss_mib"] - bare for run in runs]),
        }
        if "matformer" in by_config:
            row["x_matformer"] = spread([run["seconds"] / m["seconds"] for run, m in zip(runs, by_config["matformer"])])
        before = config.split(":")[0] + ":before" if ":" in config else None
        if before in by_config and before != config:
            row["x_faster_than_before"] = spread(
                [b["seconds"] / run["seconds"] for run, b in zip(runs, by_config[before])]
            )
            row["max_relative_difference_vs_before"] = max(
                relative_difference(run["prediction"], b["prediction"]) for run, b in zip(runs, by_config[before])
            )
        figures["configs"][config] = row
    return figures


def print_table(figures: dict, args: argparse.Namespace) -> None:
    print(f"## PRDNet attention, forward + backward, batch of {args.batch_size} embedded crystals, "
          f"{args.threads} thread(s), median of {args.rounds} rounds (spread = (max − min) / median)\n")
    print(f"bare process: {figures['bare_peak_rss_mib']:.0f} MiB peak RSS\n")
    print("| configuration | atoms | edges | parameters | seconds | spread | × Matformer | × faster than before "
          "| peak RSS − bare (MiB) | max rel. diff. vs before |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for config, row in figures["configs"].items():
        versus = f"{row['x_matformer']['median']:.2f}" if "x_matformer" in row else "–"
        faster = f"{row['x_faster_than_before']['median']:.2f}" if "x_faster_than_before" in row else "–"
        difference = f"{row['max_relative_difference_vs_before']:.1e}" if "max_relative_difference_vs_before" in row \
            else "–"
        print(f"| {config} | {row['atoms']} | {row['edges']:,} | {row['parameters']:,} | "
              f"{row['seconds']['median']:.2f} | {100 * row['seconds']['spread']:.0f}% | {versus} | {faster} | "
              f"{row['peak_rss_above_bare_mib']['median']:.0f} | {difference} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS, metavar="CONFIG")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-atoms", type=int, default=200)
    parser.add_argument("--pool", type=int, default=2000, help="crystals are drawn from the first POOL of the file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", help="JSON file to write (default: benchmarks/results/attention.json)")
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--prediction-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    configs = list(dict.fromkeys(["bare", *args.configs]))
    recording = Recording("attention", args.threads, args.results)
    recording.start()
    with tempfile.TemporaryDirectory() as folder:
        rounds = [[run_worker(c, args, Path(folder), r) for c in configs] for r in range(args.rounds)]
        figures = summarise(configs, rounds)
    for round_ in rounds:
        for run in round_:
            run.pop("prediction", None)
    print_table(figures, args)
    path = recording.write(figures, rounds, batch_size=args.batch_size, max_atoms=args.max_atoms, pool=args.pool)
    print(f"\nwritten: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
