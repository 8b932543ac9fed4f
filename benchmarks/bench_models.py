"""Model cost: forward + backward time and peak memory per batch, before vs after issue 13.

For every model (``--models``) at every preset (``--presets``), on one batch of embedded MP
crystals (``--batch-size``, 64 by default; ``--paper-batch-size`` for the ``paper`` presets,
whose largest models are slow on a CPU), each model's batch built with its own graph recipe:

  variants   ``none``               the backbone alone (registry: diffraction null)
             ``invariant before``   + the ``invariant`` plug-in as it was before issue 13
                                    (benchmarks/reference_diffraction.py: reflections enumerated
                                    at every pass, phase sums through a sparse matrix)
             ``invariant after``    + the package's plug-in, reflection cache warm (as from the
                                    second epoch on: each crystal's reflections enumerated once)
             ``invariant cold``     + the package's plug-in, reflection cache emptied before
                                    each pass (a first epoch)
  time       forward + backward in training mode, the variants timed in turn (interleaved, so a
             change of machine load hits them all alike), the median of ``--repeats`` rounds
             after one warm-up round (every round is in the results file), ``--threads`` torch
             threads (1 by default), all in one process per model and preset. Two clocks: CPU seconds of the process (time.process_time: on a
             shared machine, waiting for a core is not counted; the ratios are read from it) and
             wall seconds (time.perf_counter)
  memory     peak RSS of a fresh process during one forward + backward pass, less its RSS just
             before the pass (model, batch and a warm reflection cache already built): one
             process per model, preset and variant, with glibc's mmap threshold fixed at 128 KiB
             (large tensors are returned to the system when freed)
  check      max |after − before| / max |before| of the model outputs (same weights, float32)

and the ``invariant`` overhead per backbone: time(variant) / time(none) − 1.

    python benchmarks/bench_models.py                                    # all models, small + paper
    python benchmarks/bench_models.py --presets small --models cgcnn schnet
    python benchmarks/bench_models.py --presets paper --paper-batch-size 16
    python benchmarks/bench_models.py --bucket-scan                      # the plug-in alone: group cost
    python benchmarks/bench_models.py --scaling                          # the plug-ins alone vs size
    python benchmarks/bench_models.py --parameters                       # parameter counts as well
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import Recording  # noqa: E402
from reference_diffraction import reference_like  # noqa: E402

from prdnet.audit import embedded_data_path, sample_structures  # noqa: E402
from prdnet.data.loader import structure_to_data  # noqa: E402
from prdnet.data.recipes import graph_recipe_for  # noqa: E402
from prdnet.models import build_model, count_parameters, load_presets  # noqa: E402
from prdnet.models import diffraction as diffraction_module  # noqa: E402
from prdnet.models.base import crystal_geometry  # noqa: E402
from prdnet.models.registry import BACKBONES  # noqa: E402

VARIANTS = ("none", "invariant before", "invariant after", "invariant cold")
PUBLISHED_PARAMETERS = {
    "prdnet": (20.9e6, "PRDNet paper (with its diffraction module)"),
    "alignn": (4.0e6, "ComFormer paper, cost table (JARVIS formation energy)"),
    "matformer": (2.9e6, "ComFormer paper, cost table"),
    "icomformer": (4.1e6, "ComFormer paper, cost table"),
}
"""Published parameter counts (see /work/shared/paper/published-scores.md, "Cost anchors");
the CGCNN, SchNet and MEGNet papers give none."""


# --- what one variant is -----------------------------------------------------------------


def build_variant(name: str, preset: str, variant: str) -> torch.nn.Module:
    """The model of ``variant`` (see the module docstring), seeded so every variant of a model
    starts from the same backbone weights; ``invariant before`` carries the weights of
    ``invariant after``."""
    torch.manual_seed(0)
    diffraction = None if variant == "none" else "invariant"
    model = build_model({"name": name, "preset": preset, "diffraction": diffraction}, "regression")
    if variant == "invariant before":
        model.diffraction = reference_like(model.diffraction)
    return model


def prepare_pass(variant: str) -> None:
    """What happens before a timed pass: the cold variant starts with an empty reflection cache."""
    if variant == "invariant cold":
        diffraction_module.REFLECTIONS.clear()


def forward_backward(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """One forward + backward pass in training mode; returns the detached output."""
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(batch)
    out.square().mean().backward()
    return out.detach()


def rss_bytes() -> int:
    """Resident set size of this process now (bytes), from /proc/self/statm."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (bytes; ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- workers (each in its own process) ----------------------------------------------------


def time_worker(job: dict) -> dict:
    """Median-of-``repeats`` forward + backward seconds of every variant of one model and preset,
    interleaved, plus the before/after output check."""
    batch = torch.load(job["batch"], weights_only=False)
    models = {variant: build_variant(job["model"], job["preset"], variant) for variant in job["variants"]}
    times: dict[str, list[float]] = {variant: [] for variant in job["variants"]}
    walls: dict[str, list[float]] = {variant: [] for variant in job["variants"]}
    outputs: dict[str, torch.Tensor] = {}
    for round_ in range(job["repeats"] + 1):  # round 0 warms up (and fills the reflection cache)
        for variant, model in models.items():
            prepare_pass(variant)
            start, wall = time.process_time(), time.perf_counter()
            outputs[variant] = forward_backward(model, batch)
            if round_:
                times[variant].append(time.process_time() - start)
                walls[variant].append(time.perf_counter() - wall)
    result = {"seconds": {variant: statistics.median(values) for variant, values in times.items()},
              "wall": {variant: statistics.median(values) for variant, values in walls.items()},
              "rounds": {"cpu_seconds": times, "wall_seconds": walls}}
    if "invariant before" in outputs and "invariant after" in outputs:
        before, after = outputs["invariant before"], outputs["invariant after"]
        result["relative_difference"] = float((after - before).abs().max() / before.abs().max().clamp(min=1e-30))
    return result


def memory_worker(job: dict) -> dict:
    """Peak RSS increase of one forward + backward pass of one variant in this fresh process."""
    batch = torch.load(job["batch"], weights_only=False)
    model = build_variant(job["model"], job["preset"], job["variant"])
    if job["variant"] == "invariant after":  # warm cache, as in timing; its size is in the baseline
        _, lattice = crystal_geometry(batch, next(model.parameters()).dtype)
        diffraction_module.REFLECTIONS.lookup(lattice, model.diffraction.q_max)
    gc.collect()
    before = rss_bytes()
    forward_backward(model, batch)
    return {"peak_increase": peak_rss_bytes() - before, "peak": peak_rss_bytes(), "before": before}


def run_worker(kind: str, job: dict, threads: int) -> dict:
    """Run ``kind`` (time | memory) for ``job`` in a fresh Python process; its JSON result."""
    # A fixed mmap threshold: large tensors get their own mappings and return them when freed,
    # so the peak RSS follows the peak of live tensors rather than glibc's adaptive heap.
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                       MALLOC_MMAP_THRESHOLD_="131072")
    command = [sys.executable, __file__, "--worker", kind, "--job", json.dumps(job), "--threads", str(threads)]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{kind} worker for {job['model']}/{job['preset']} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


# --- the comparison -------------------------------------------------------------------------


def embedded_crystals(count: int, max_atoms: int, pool: int) -> list:
    """``count`` embedded MP structures (seeded choice among the first ``pool`` with ≤ ``max_atoms``)."""
    return [structure for _, structure, _ in sample_structures(embedded_data_path(), count, max_atoms, pool=pool)]


def batch_file(structures: list, name: str, preset: str, folder: Path, cache: dict) -> tuple[Path, Batch]:
    """The batch of ``structures`` under model ``name``'s graph recipe at ``preset``, saved once
    per (recipe, size) in ``folder`` for the workers."""
    recipe = graph_recipe_for({"name": name, "preset": preset})
    key = (repr(recipe), len(structures))
    if key not in cache:
        batch = Batch.from_data_list([structure_to_data(s, params=recipe, dtype=torch.float32) for s in structures])
        path = folder / f"batch-{len(cache)}.pt"
        torch.save(batch, path)
        cache[key] = (path, batch)
    return cache[key]


def reflection_pairs(batch: Batch, preset: str) -> tuple[int, int]:
    """Reflections (half sphere) and atom–reflection pairs of the ``invariant`` mode on ``batch``."""
    q_max = load_presets()["diffraction"][preset]["invariant"]["q_max"]
    _, lattice = crystal_geometry(batch, torch.float32)
    counts = [len(hkl) for hkl in diffraction_module.ReflectionCache().lookup(lattice, q_max)]
    atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).tolist()
    return sum(counts), sum(r * n for r, n in zip(counts, atoms))


def compare(args: argparse.Namespace) -> None:
    """Time and memory of every model, preset and variant; the tables on stdout, every figure
    and round in ``benchmarks/results/models.json`` (or ``--results``)."""
    recording = Recording("models", args.threads, args.results)
    recording.start()
    rows: list[dict] = []
    presets = load_presets()["models"]
    largest = max(args.batch_size, args.paper_batch_size)
    structures = embedded_crystals(largest, args.max_atoms, args.pool)
    print(f"# Forward + backward per batch, before vs after issue 13 ({args.threads} torch thread(s), "
          f"median of {args.repeats} interleaved rounds after a warm-up; ratios from CPU seconds (process time); "
          f"memory: peak RSS of a fresh process during one pass, less its RSS before the pass)\n")
    with tempfile.TemporaryDirectory() as folder:
        cache: dict = {}
        for preset in args.presets:
            size = args.paper_batch_size if preset == "paper" else args.batch_size
            note = f" (--paper-batch-size {size}, not 64)" if preset == "paper" and size != 64 else ""
            print(f"## Preset `{preset}`, batch of {size} embedded crystals{note}\n")
            print("| model | atoms | edges | reflections | pairs | variant | CPU s | wall s | × none (CPU) | "
                  "overhead | peak MiB | Δ out |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|")
            summary = []
            for name in args.models:
                if preset not in presets[name]:
                    print(f"| {name} | – | – | – | – | (no `{preset}` preset) | | | | | |")
                    continue
                path, batch = batch_file(structures[:size], name, preset, Path(folder), cache)
                reflections, pairs = reflection_pairs(batch, preset)
                job = {"model": name, "preset": preset, "batch": str(path), "repeats": args.repeats,
                       "variants": list(args.variants)}
                timing = run_worker("time", job, args.threads)
                memory = {
                    variant: run_worker("memory", dict(job, variant=variant), args.threads)["peak_increase"]
                    for variant in args.variants
                    if variant != "invariant cold"
                } if not args.skip_memory else {}
                seconds = timing["seconds"]
                for variant in args.variants:
                    ratio = seconds[variant] / seconds["none"] if "none" in seconds else math.nan
                    mib = f"{memory[variant] / 2**20:.0f}" if variant in memory else "–"
                    check = f"{timing['relative_difference']:.1e}" if variant == "invariant after" and \
                        "relative_difference" in timing else ""
                    print(f"| {name} | {batch.num_nodes} | {batch.edge_index.shape[1]} | {reflections:,} | "
                          f"{pairs:,} | {variant} | {seconds[variant]:.3f} | {timing['wall'][variant]:.3f} | "
                          f"{ratio:.2f} | "
                          f"{100 * (ratio - 1):+.0f}% | {mib} | {check} |", flush=True)
                summary.append((name, seconds, memory))
                rows.append({"model": name, "preset": preset, "batch_size": size, "atoms": batch.num_nodes,
                             "edges": int(batch.edge_index.shape[1]), "reflections": reflections, "pairs": pairs,
                             "cpu_seconds": seconds, "wall_seconds": timing["wall"],
                             "x_none": {v: seconds[v] / seconds["none"] for v in seconds if "none" in seconds},
                             "peak_increase_mib": {v: b / 2**20 for v, b in memory.items()},
                             "relative_difference": timing.get("relative_difference"),
                             "rounds": timing["rounds"]})
            print_overheads(preset, summary)
    figures = {"rows": [{k: v for k, v in row.items() if k != "rounds"} for row in rows]}
    path = recording.write(figures, [{"model": r["model"], "preset": r["preset"], **r["rounds"]} for r in rows],
                           repeats=args.repeats, batch_size=args.batch_size, paper_batch_size=args.paper_batch_size)
    print(f"written: {path}", file=sys.stderr)


def print_overheads(preset: str, summary: list) -> None:
    """The ``invariant`` overhead per backbone (time and peak memory over the backbone alone)."""
    if not summary or not all("none" in seconds for _, seconds, _ in summary):
        return
    print(f"\n### `invariant` overhead per backbone, preset `{preset}`\n")
    print("| model | none CPU s | before CPU s | after CPU s | speed-up of the plug-in | overhead before | "
          "overhead after | overhead cold | memory none MiB | before MiB | after MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, seconds, memory in summary:
        none = seconds["none"]
        before, after, cold = (seconds.get(v, math.nan) for v in VARIANTS[1:])
        # (before − none) / (after − none): how much cheaper the plug-in itself became
        speedup = f"{(before - none) / (after - none):.1f}×" if after > none else "after ≤ none"
        mib = [f"{memory[v] / 2**20:.0f}" if v in memory else "–" for v in VARIANTS[:3]]
        print(f"| {name} | {none:.3f} | {before:.3f} | {after:.3f} | {speedup} | "
              f"{100 * (before / none - 1):+.0f}% | {100 * (after / none - 1):+.0f}% | "
              f"{100 * (cold / none - 1):+.0f}% | " + " | ".join(mib) + " |")
    print()


# --- the plug-in alone: size groups vs the sparse reference ---------------------------------


def bucket_scan(args: argparse.Namespace) -> dict:
    """Time of the ``invariant`` module alone (forward + backward, warm cache) for several group
    costs (BUCKET_COST_PAIRS), against the sparse reference: the measurement behind the value."""
    structures = embedded_crystals(args.batch_size, args.max_atoms, args.pool)
    batch = Batch.from_data_list([structure_to_data(s, dtype=torch.float32) for s in structures])
    frac_coords, lattice = crystal_geometry(batch, torch.float32)
    params = load_presets()["diffraction"]["small"]["invariant"]
    torch.manual_seed(0)
    module = diffraction_module.InvariantDiffraction(64, **params)
    reference = reference_like(module)
    h = torch.randn(batch.num_nodes, 64, requires_grad=True)
    counts = [len(hkl) for hkl in diffraction_module.REFLECTIONS.lookup(lattice, params["q_max"])]
    atoms = torch.bincount(batch.batch).tolist()
    device = "cpu"
    saved = diffraction_module.BUCKET_COST_PAIRS[device]
    costs = [0, 2_000, 8_000, 30_000, 100_000, 10**12]

    def run(target: torch.nn.Module) -> float:
        start = time.process_time()
        target(h, frac_coords, lattice, batch.batch, batch.num_graphs).square().sum().backward()
        return time.process_time() - start

    times: dict = {cost: [] for cost in costs}
    times["sparse"] = []
    for round_ in range(args.repeats + 1):
        for cost in costs:
            diffraction_module.BUCKET_COST_PAIRS[device] = cost
            seconds = run(module)
            if round_:
                times[cost].append(seconds)
        seconds = run(reference)
        if round_:
            times["sparse"].append(seconds)
    diffraction_module.BUCKET_COST_PAIRS[device] = saved
    print(f"## The `invariant` plug-in alone (small preset), batch of {batch.num_graphs} crystals, "
          f"{batch.num_nodes} atoms, {sum(counts):,} reflections, "
          f"{sum(r * n for r, n in zip(counts, atoms)):,} pairs; CPU ms (process time), best of {args.repeats}\n")
    print("| phase sums | group cost (pairs) | groups | padded pairs | CPU ms |\n|---|---|---|---|---|")
    for cost in costs:
        groups = diffraction_module.size_buckets(counts, atoms, cost)
        padded = sum(len(g) * max(counts[b] for b in g) * max(atoms[b] for b in g) for g in groups)
        shown = "∞" if cost == costs[-1] else f"{cost:,}"
        marker = " (package)" if cost == saved else ""
        print(f"| dense groups{marker} | {shown} | {len(groups)} | {padded:,} | {1e3 * min(times[cost]):.1f} |")
    print(f"| sparse (reference) | – | – | – | {1e3 * min(times['sparse']):.1f} |\n")
    return {"package_cost": saved, "cpu_seconds": {str(cost): values for cost, values in times.items()}}


# --- the diffraction modules alone against system size --------------------------------------


def saved_tensor_bytes(run) -> int:
    """Bytes of the distinct tensors autograd saves for the backward pass while ``run()`` executes."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        parts = [tensor._indices(), tensor._values()] if tensor.is_sparse else [tensor]
        for part in parts:
            storage = part.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def scaling_point(structure, mode: str, cells: int, q_max: float | None, c_max: int | None, repeats: int) -> dict:
    """Time and autograd memory of one diffraction module alone on a cells×1×1 supercell
    (``mode``: paper, invariant, or invariant-before = the reference)."""
    batch = Batch.from_data_list([structure_to_data(structure * (cells, 1, 1), dtype=torch.float32)])
    base = "paper" if mode == "paper" else "invariant"
    params = dict(load_presets()["diffraction"]["small"][base])
    params.update({"q_max": q_max} if base == "invariant" else {"c_max": c_max})
    torch.manual_seed(0)
    module = diffraction_module.build_diffraction(base, 64, params)
    if mode == "invariant-before":
        module = reference_like(module)
    frac_coords, lattice = crystal_geometry(batch, torch.float32)
    h = torch.randn(batch.num_nodes, 64, requires_grad=True)
    if base == "invariant":
        reflections = len(diffraction_module.ReflectionCache().lookup(lattice, q_max)[0])
    else:
        reflections = len(module.hkl)

    def forward():
        return module(h, frac_coords, lattice, batch.batch, 1)

    memory = saved_tensor_bytes(forward)
    times = []
    for _ in range(repeats + 1):
        start = time.process_time()
        forward().square().sum().backward()
        times.append(time.process_time() - start)
    atoms = batch.num_nodes
    return {"atoms": atoms, "reflections": reflections, "pairs": atoms * reflections,
            "seconds": min(times[1:]), "rounds": times[1:], "memory": memory}


def scaling_table(args: argparse.Namespace) -> list[dict]:
    _, structure, _ = sample_structures(embedded_data_path(), 1, 8, pool=200, seed=1)[0]
    print(f"## Diffraction modules alone, n×1×1 supercells of {structure.composition.reduced_formula} "
          f"({len(structure)} atoms, {structure.volume:.0f} Å³): forward + backward, CPU ms (process time), "
          f"best of {args.repeats}\n")
    print("| mode | setting | atoms | reflections | atoms × reflections | ms | ns per pair | "
          "saved for backward (MiB) | bytes per pair |")
    print("|---|---|---|---|---|---|---|---|---|")
    points = [(mode, cells, 4.0, None) for cells in (1, 4, 16, 32) for mode in ("invariant-before", "invariant")]
    points += [(mode, 4, q, None) for q in (6.0, 8.0) for mode in ("invariant-before", "invariant")]
    points += [("paper", cells, None, 8) for cells in (1, 4, 16, 32)]
    rows = []
    for mode, cells, q_max, c_max in points:
        result = scaling_point(structure, mode, cells, q_max, c_max, args.repeats)
        rows.append({"mode": mode, "cells": cells, "q_max": q_max, "c_max": c_max, **result})
        setting = f"{cells}×1×1, " + (f"Q_max {q_max:g} Å⁻¹" if q_max else f"C_max {c_max}")
        print(f"| {mode} | {setting} | {result['atoms']} | {result['reflections']:,} | {result['pairs']:,} | "
              f"{1e3 * result['seconds']:.1f} | {1e9 * result['seconds'] / result['pairs']:.0f} | "
              f"{result['memory'] / 2**20:.1f} | {result['memory'] / result['pairs']:.0f} |", flush=True)
    print()
    return rows


# --- parameter counts -----------------------------------------------------------------------


def parameter_table() -> None:
    print("## Parameters\n")
    print("| model | preset | none | paper | invariant |\n|---|---|---|---|---|")
    presets = load_presets()
    for name in BACKBONES:
        for preset in presets["models"][name]:
            counts = [
                count_parameters(build_model({"name": name, "preset": preset, "diffraction": mode}, "regression"))
                for mode in (None, "paper", "invariant")
            ]
            print(f"| {name} | {preset} | " + " | ".join(f"{count:,}" for count in counts) + " |")
    print("\n## Paper-size backbones against their published counts\n")
    print("| model | paper preset (no diffraction) | + paper diffraction | published | ratio | source |")
    print("|---|---|---|---|---|---|")
    for name in BACKBONES:
        alone, plugged = (
            count_parameters(build_model({"name": name, "preset": "paper", "diffraction": mode}, "regression"))
            for mode in (None, "paper")
        )
        published, source = PUBLISHED_PARAMETERS.get(name, (None, "not published"))
        reference = plugged if name == "prdnet" else alone
        ratio = f"{reference / published:.2f}" if published else "–"
        shown = f"{published / 1e6:.1f}M" if published else "–"
        print(f"| {name} | {alone / 1e6:.2f}M | {plugged / 1e6:.2f}M | {shown} | {ratio} | {source} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(BACKBONES), choices=list(BACKBONES), metavar="MODEL",
                        help="backbones to measure (default: all)")
    parser.add_argument("--presets", nargs="+", default=["small", "paper"], help="model presets (default: small paper)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                        help="variants to measure (default: all; 'none' is needed for ratios)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--paper-batch-size", type=int, default=64,
                        help="batch size at the paper presets (e.g. 16 on a CPU: PRDNet's paper preset takes a "
                             "minute per pass of 64 crystals); the output says when it is not 64")
    parser.add_argument("--pool", type=int, default=2000, help="crystals are drawn from the first POOL of the file")
    parser.add_argument("--max-atoms", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids OpenMP spin on a busy CPU)")
    parser.add_argument("--results", help="JSON file to write (default: benchmarks/results/models.json)")
    parser.add_argument("--skip-memory", action="store_true", help="time only (no memory processes)")
    parser.add_argument("--bucket-scan", action="store_true",
                        help="only time the invariant plug-in alone against its group cost and the sparse reference")
    parser.add_argument("--scaling", action="store_true",
                        help="only time the diffraction modules alone on n×1×1 supercells (before, after, paper)")
    parser.add_argument("--parameters", action="store_true", help="print parameter counts first")
    parser.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        job = json.loads(args.job)
        print(json.dumps(time_worker(job) if args.worker == "time" else memory_worker(job)))
        return
    if args.parameters:
        parameter_table()
    if args.bucket_scan or args.scaling:
        for flag, name, run in ((args.bucket_scan, "models_bucket_scan", bucket_scan),
                                (args.scaling, "models_scaling", scaling_table)):  # fmt: skip
            if flag:
                recording = Recording(name, args.threads)
                recording.start()
                figures = run(args)
                print(f"written: {recording.write(figures, figures, repeats=args.repeats)}", file=sys.stderr)
        return
    compare(args)


if __name__ == "__main__":
    main()
