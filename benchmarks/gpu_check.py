"""Everything to measure and check on a GPU, in one call (``benchmarks/gpu_check.sh``, ``make gpu-check``).

On a machine without CUDA it prints one line and exits 0. On a GPU it runs, in this order, and
writes every figure to ``benchmarks/results/gpu_check.json`` (or ``--results``) as it goes:

1. ``steps``: every model at its ``paper`` preset, and PRDNet at ``reference``: seconds per
   training step (forward, backward, AdamW step; ``--steps`` timed after 3 untimed, CUDA
   synchronized; median and spread) and crystals per second on a batch of ``--batch-size``
   embedded MP crystals (each model's own graph recipe), in float32 and under bf16 autocast;
   peak GPU memory (``torch.cuda.max_memory_allocated``); bf16 against float32 on the same
   weights: predictions finite, largest relative difference.
2. ``loader``: ``bench_loader.py`` on 2,000 embedded crystals (crystals/s of the training job's
   loader) beside the GPU's appetite, the largest crystals/s of step 1.
3. ``end_to_end``: the default config (``config/config.yaml``) on jdft2d only, seed 0, 2 epochs,
   ``device: cuda``, one GPU per job: the workflow from data to tables, its wall time.
4. ``torchrun``: one training job through ``torchrun --nproc-per-node 1`` (NCCL on CUDA).
5. ``resume``: a job stopped by SIGTERM after its first checkpoint and run again, against the
   same job uninterrupted: largest difference of the predictions (GPU kernels with atomic sums are
   not bit-reproducible, so the figure is reported, not required to be 0).

Each part has its own time limit; the whole fits in 8 minutes on one H100-class GPU
(``--steps 5``, batch 64). A failed part is recorded with its error and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from record import Recording, spread  # noqa: E402

NO_GPU = "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def model_steps(args: argparse.Namespace) -> list[dict]:
    """Part 1: seconds per training step, fp32 and bf16, per model at its paper preset."""
    from torch_geometric.data import Batch

    from prdnet.audit import embedded_data_path, sample_structures
    from prdnet.data.loader import structure_to_data
    from prdnet.data.recipes import graph_recipe_for
    from prdnet.models.registry import BACKBONES, build_model, count_parameters

    device = torch.device(args.device)
    crystals = sample_structures(embedded_data_path(), args.batch_size, 200, pool=2000)
    specs = [{"name": name, "preset": "paper"} for name in BACKBONES]
    specs.insert(1, {"name": "prdnet", "preset": "reference"})
    rows = []
    for spec in specs:
        recipe = graph_recipe_for(spec)
        batch = Batch.from_data_list([structure_to_data(s, params=recipe, dtype=torch.float32)
                                      for _, s, _ in crystals]).to(device)  # fmt: skip
        row: dict = {"model": spec["name"], "preset": spec["preset"], "atoms": batch.num_nodes,
                     "edges": int(batch.edge_index.shape[1])}
        predictions = {}
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = build_model(spec, "regression").to(device).train()
            row["parameters"] = count_parameters(model)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for step in range(3 + args.steps):
                synchronize(device)
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    prediction = model(batch)
                prediction.float().square().mean().backward()
                optimizer.step()
                synchronize(device)
                if step >= 3:
                    times.append(time.perf_counter() - start)
            model.eval()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                torch.manual_seed(0)
                fresh = build_model(spec, "regression").to(device).eval()
                predictions[precision] = fresh(batch).float().cpu()
            row[precision] = {"seconds_per_step": spread(times), "rounds": times,
                              "crystals_per_s": args.batch_size / statistics.median(times),
                              "peak_memory_gib": peak_memory_gib(device)}
            del model, optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()
        exact, mixed = predictions["fp32"], predictions["bf16"]
        row["bf16_finite"] = bool(torch.isfinite(mixed).all())
        row["bf16_relative_difference"] = float((mixed - exact).abs().max() / exact.abs().max().clamp(min=1e-30))
        print(f"  {spec['name']}/{spec['preset']}: fp32 {row['fp32']['seconds_per_step']['median']:.3f} s/step, "
              f"bf16 {row['bf16']['seconds_per_step']['median']:.3f} s/step, "
              f"{row['fp32']['peak_memory_gib']:.1f} GiB, bf16 vs fp32 {row['bf16_relative_difference']:.1e}",
              flush=True)
        rows.append(row)
    return rows


def loader(args: argparse.Namespace, folder: Path, steps: list[dict]) -> dict:
    """Part 2: the training job's loader against the GPU's appetite."""
    results = folder / "loader.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_loader.py"), "--limit", "2000", "--workers", "2",
                    "--results", str(results)], check=True, timeout=150, cwd=ROOT)  # fmt: skip
    figures = json.loads(results.read_text())["figures"]
    appetite = max((row["fp32"]["crystals_per_s"] for row in steps), default=float("nan"))
    return {"loader": figures, "gpu_appetite_crystals_per_s_fp32": appetite}


def end_to_end(folder: Path, device: str) -> dict:
    """Part 3: the default config on jdft2d, 2 epochs, on ``device``, one GPU per job on CUDA."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["results_dir"] = str(folder / "results")
    config["datasets"] = {"matbench_jdft2d": config["datasets"]["matbench_jdft2d"]}
    config["experiments"][0]["datasets"] = ["matbench_jdft2d"]
    config["training"].update({"device": device, "epochs": 2, "seeds": [0]})
    config["resources"]["train"]["gpu"] = 1 if device == "cuda" else 0
    for dataset in config["datasets"].values():  # relative paths of the shipped config are from the root
        for key in ("path", "matminer_data"):
            if key in dataset:
                dataset[key] = str((ROOT / dataset[key]).resolve())
    config["atom_features"] = str((ROOT / config["atom_features"]).resolve())
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [str(Path(sys.executable).parent / "snakemake"), "--profile", "workflow/profiles/local", "--configfile",
               str(path), "--cores", "4", "--resources", "gpu=1"]  # fmt: skip
    start = time.perf_counter()
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment)
    wall = time.perf_counter() - start
    if finished.returncode != 0:
        raise RuntimeError(f"workflow failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    metrics = sorted((folder / "results").glob("*/runs/**/metrics.json"))
    return {"wall_seconds": wall, "jobs": len(metrics),
            "devices": sorted({json.loads(p.read_text()).get("device", "?") for p in metrics})}


def torchrun_and_resume(folder: Path, device: str) -> dict:
    """Parts 4 and 5: a one-process torchrun (NCCL) job; a SIGTERM-stopped job resumed."""
    from training_jobs import build_dataset, outputs, start, train_arguments, wait_for_line

    from prdnet.audit import embedded_data_path

    dataset = build_dataset(folder / "data", embedded_data_path())
    recipe = {"device": device, "epochs": 4}
    result: dict = {}
    out = folder / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "-m",
               "prdnet.cli", "train", *train_arguments(dataset, out, recipe)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    result["torchrun_exit_status"] = finished.returncode
    if finished.returncode != 0:
        raise RuntimeError(f"torchrun job failed:\n{finished.stderr[-3000:]}")
    plain = folder / "plain"
    status = subprocess.run([sys.executable, "-m", "prdnet.cli", "train", *train_arguments(dataset, plain, recipe)],
                            capture_output=True, text=True, timeout=120).returncode  # fmt: skip
    stopped = folder / "stopped"
    log = folder / "stopped.log"
    process = start([sys.executable, "-m", "prdnet.cli", "train", *train_arguments(dataset, stopped, recipe)], log)
    wait_for_line(process, log, "checkpoint (after epoch 1)", timeout=90)
    process.send_signal(signal.SIGTERM)
    result["stop_exit_status"] = process.wait(timeout=60)
    resumed = subprocess.run([sys.executable, "-m", "prdnet.cli", "train", *train_arguments(dataset, stopped, recipe)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    result["resume_exit_status"] = resumed.returncode
    if status or resumed.returncode:
        raise RuntimeError(f"resume check: plain job {status}, resumed job {resumed.returncode}")
    a, b = outputs(plain)[2], outputs(stopped)[2]
    columns = ["predicted"]
    result["resume_max_prediction_difference"] = float(max((a[c] - b[c]).abs().max() for c in columns))
    result["torchrun_matches_one_process"] = float(max((outputs(out)[2][c] - a[c]).abs().max() for c in columns))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model and precision")
    parser.add_argument("--results", help="JSON file (default: benchmarks/results/gpu_check.json)")
    parser.add_argument("--device", default="cuda",
                        help="cuda; or cpu, to run the same parts on the CPU (a smoke test of this script)")
    parser.add_argument("--parts", nargs="+", default=["steps", "loader", "end_to_end", "torchrun"],
                        choices=["steps", "loader", "end_to_end", "torchrun"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_GPU)
        return
    recording = Recording("gpu_check", torch.get_num_threads(), args.results)
    recording.start()
    on_gpu = args.device == "cuda"
    figures: dict = {"device": torch.cuda.get_device_name(0) if on_gpu else "cpu", "cuda": torch.version.cuda}
    with tempfile.TemporaryDirectory() as folder:
        parts = {
            "steps": lambda: model_steps(args),
            "loader": lambda: loader(args, Path(folder), figures.get("steps", [])),
            "end_to_end": lambda: end_to_end(Path(folder) / "e2e", args.device),
            "torchrun": lambda: torchrun_and_resume(Path(folder) / "jobs", args.device),
        }
        for name in args.parts:
            print(f"gpu_check: {name}", flush=True)
            start = time.perf_counter()
            try:
                figures[name] = parts[name]()
            except Exception as error:  # record it and go on: one call has to bring back every part
                figures[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
                print(f"gpu_check: {name} failed: {error}", flush=True)
            figures.setdefault("part_seconds", {})[name] = time.perf_counter() - start
            recording.write(figures, [], parts=args.parts)  # what is done so far survives a time-out
    path = recording.write(figures, [], parts=args.parts)
    print(f"gpu_check: written {path}")
    failed = [name for name in args.parts if isinstance(figures.get(name), dict) and "error" in figures[name]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
