"""Epoch time in float32 and mixed precision (training.precision) on a GPU, through the training
job's own epoch loop (prdnet.training.loop.train_epoch: autocast, a gradient scaler for fp16, gradient
clipping, the per-batch schedule).

For each precision: the same initial weights, ``--warmup`` batches not timed, then ``--rounds``
timed epochs over ``--limit`` embedded MP crystals (graphs built here), CUDA synchronized; prints
the median s/epoch, crystals/s, peak GPU memory and the speed-up over fp32 measured in the same
run, and writes every epoch's time with the command, commit and load average to
``benchmarks/results/precision.json``. Also the
checkpoint of the model (prdnet.checkpoint: model, optimizer, scheduler, best weights): its size
and write time.

    python benchmarks/bench_precision.py --model prdnet --preset paper --limit 4000
    python benchmarks/bench_precision.py --device cpu --preset small --limit 200 --precisions fp32 bf16   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from prdnet.checkpoint import rng_state, save_checkpoint
from prdnet.data.loader import select_data
from prdnet.data.prepare import collect_entries, entries_to_columns
from prdnet.data.recipes import graph_recipe_for
from prdnet.data.shards import featurize_dataset, read_shards
from prdnet.data.sources.mp_embedded import read_mp_embedded
from prdnet.data.tables import crystals_table
from prdnet.data.validate import ValidationRules
from prdnet.distributed import EpochBatchSampler
from prdnet.io import write_parquet
from prdnet.models.registry import build_model, count_parameters
from prdnet.training.evaluation import Standardizer
from prdnet.training.loop import EpochProgress, train_epoch
from prdnet.training.optim import loss_function, make_optimizer, make_scheduler
from prdnet.training.recipe import TrainingConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import Recording, spread  # noqa: E402

TASK = "formation_energy"


def embedded_data(path: str, limit: int, folder: Path, spec: dict) -> list:
    """``limit`` embedded MP crystals as ``Data``, graphs built by the model's recipe."""
    entries, _, _ = collect_entries(read_mp_embedded(path, limit), [TASK], ValidationRules())
    write_parquet(folder / "structures.parquet", crystals_table(entries_to_columns(entries, [TASK])))
    manifest = featurize_dataset(folder / "structures.parquet", folder / "graphs", graph_recipe_for(spec), 4, 2)
    crystals, graphs = read_shards([folder / "graphs" / name for name in manifest["shards"]])
    return select_data(crystals, graphs, TASK)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mp/mp_2018_cgcnn36k.jsonl.gz")
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--model", default="prdnet")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--diffraction", default="paper", help="none, paper or invariant")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches per precision")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per precision")
    parser.add_argument("--results", help="JSON file to write (default: benchmarks/results/precision.json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures a GPU (use --device cpu for a smoke run)")

    with tempfile.TemporaryDirectory() as folder:
        spec = {"name": args.model, "preset": args.preset,
                "diffraction": None if args.diffraction == "none" else args.diffraction}  # fmt: skip
        data = embedded_data(args.data, args.limit, Path(folder), spec)
        torch.manual_seed(0)
        initial = build_model(spec, "regression").state_dict()
        scaler = Standardizer(torch.cat([d.y for d in data]), enabled=True)
        print(f"{args.model} {args.preset} (+{args.diffraction}), {len(data)} crystals, batch {args.batch_size}, "
              f"{device} {torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}")  # fmt: skip
        recording = Recording("precision", torch.get_num_threads(), args.results)
        recording.start()
        times, rounds, figures = {}, [], {}
        for precision in args.precisions:
            config = TrainingConfig(epochs=2, batch_size=args.batch_size, precision=precision, device=args.device)
            model = build_model(spec, "regression").to(device)
            model.load_state_dict(initial)
            optimizer = make_optimizer(model, config)
            sampler = EpochBatchSampler(len(data), args.batch_size, seed=0)
            scheduler = make_scheduler(optimizer, config, sampler.batches_per_epoch())
            grad_scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
            loader = DataLoader(data, batch_sampler=sampler)
            common = (optimizer, scheduler, grad_scaler, loss_function("regression", config.loss), scaler, device,
                      "regression", config, tqdm(disable=True))  # fmt: skip
            warm = EpochProgress()
            train_epoch(model, loader, *common, 1, warm, lambda: warm.batches >= args.warmup)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            epochs = []
            for epoch in range(2, 2 + args.rounds):
                synchronize(device)
                start = time.perf_counter()
                sampler.set_epoch(epoch)
                train_epoch(model, loader, *common, epoch, EpochProgress(), lambda: False)
                synchronize(device)
                epochs.append(time.perf_counter() - start)
            times[precision] = statistics.median(epochs)
            memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            rounds.append({"precision": precision, "seconds_per_epoch": epochs})
            figures[precision] = {"seconds_per_epoch": spread(epochs), "crystals_per_s": len(data) / times[precision],
                                  "peak_memory_gib": memory,
                                  "x_fp32": times.get("fp32", float("nan")) / times[precision]}
            print(f"{precision}: {times[precision]:.2f} s/epoch, {len(data) / times[precision]:,.0f} crystals/s, "
                  f"peak memory {memory:.1f} GiB, speed-up over fp32 "
                  f"{times.get('fp32', float('nan')) / times[precision]:.2f}x")  # fmt: skip
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        size, seconds = save_checkpoint(Path(folder) / "checkpoint.pt", {"benchmark": True}, {
            "model": weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "best_state": {k: v.clone() for k, v in weights.items()}, "rng": [rng_state()],
        })  # fmt: skip
        print(f"checkpoint: {count_parameters(model):,} parameters, {size / 2**20:.1f} MiB written in {seconds:.2f} s")
        figures["checkpoint"] = {"parameters": count_parameters(model), "mib": size / 2**20, "write_seconds": seconds}
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        path = recording.write(figures, rounds, device=device_name, model=spec, crystals=len(data),
                               batch_size=args.batch_size)
        print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
