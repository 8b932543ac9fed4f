"""PRDNet's attention layers before and after issue 13: forward + backward time and peak memory.

Prints one table, measured in one run on this machine (CPU, ``--threads`` torch threads): for
PRDNet's ``paper`` and ``reference`` presets, the layers as they were
(benchmarks/reference_prdnet.py), as they are (prdnet/models/prdnet.py), and as they are with
``checkpoint_layers: true``; Matformer's ``paper`` preset for comparison. Each configuration runs
in its own process (so its peak resident memory, ``ru_maxrss``, is its own), beside a *bare*
process that loads the same batch and builds no model; memory is reported above the bare one.
Configurations are interleaved: each round starts one process per configuration in turn, which
does a warm-up pass and then one timed pass (training mode, loss = mean squared prediction);
the table shows the best round. Predictions of the timed pass (same seed, same weights) are
compared between before and after: largest |after − before| / largest |before|.

    python benchmarks/bench_attention.py                          # batch of 16, 2 rounds
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS, metavar="CONFIG")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-atoms", type=int, default=200)
    parser.add_argument("--pool", type=int, default=2000, help="crystals are drawn from the first POOL of the file")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--prediction-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    configs = list(dict.fromkeys(["bare", *args.configs]))
    with tempfile.TemporaryDirectory() as folder:
        rounds = [[run_worker(c, args, Path(folder), r) for c in configs] for r in range(args.rounds)]
        best = {}
        for config in configs:
            runs = [next(run for run in round_ if run["config"] == config) for round_ in rounds]
            best[config] = min(runs, key=lambda run: run.get("seconds", 0.0))
            best[config]["peak_rss_mib"] = min(run["peak_rss_mib"] for run in runs)
        bare = best["bare"]["peak_rss_mib"]
        matformer = best.get("matformer", {}).get("seconds")
        print(f"## PRDNet attention, forward + backward, batch of {args.batch_size} embedded crystals "
              f"({best['bare']['atoms']} atoms), {args.threads} thread(s), best of {args.rounds} rounds\n")
        print(f"bare process: {bare:.0f} MiB peak RSS\n")
        print("| configuration | edges | parameters | seconds | × before | × Matformer | peak RSS − bare (MiB) "
              "| × before | max rel. diff. of predictions vs before |")
        print("|---|---|---|---|---|---|---|---|---|")
        for config in configs:
            if config == "bare":
                continue
            run = best[config]
            before = best.get(config.split(":")[0] + ":before") if ":" in config else None
            before = None if before is run else before
            above = run["peak_rss_mib"] - bare
            speed = f"{before['seconds'] / run['seconds']:.2f}× faster" if before else "–"
            memory = f"{(before['peak_rss_mib'] - bare) / above:.2f}× lower" if before else "–"
            versus = f"{run['seconds'] / matformer:.2f}" if matformer else "–"
            difference = (
                f"{relative_difference(run['prediction'], before['prediction']):.1e}"
                if before else "–"
            )
            print(f"| {config} | {run['edges']:,} | {run['parameters']:,} | {run['seconds']:.2f} | {speed} | "
                  f"{versus} | {above:.0f} | {memory} | {difference} |")


if __name__ == "__main__":
    main()
