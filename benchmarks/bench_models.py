"""Model cost: parameter counts, forward+backward time, and the diffraction module's scaling.

Prints, measured in one run on this machine (CPU):
  (a) parameter counts of every model × preset × diffraction mode, and each backbone at its
      paper's size beside its published count (:data:`PUBLISHED_PARAMETERS`);
  (b) forward+backward time per batch of ``--batch-size`` embedded crystals for every model
      (``--models``) without diffraction and with each mode, as a ratio to the same backbone
      without diffraction (the variants are timed in turn, ``--repeats`` rounds, median per
      variant, so a change in machine load hits them all alike);
  (c) the diffraction module alone (``--scaling``): time of forward+backward and the memory
      autograd holds for the backward pass (bytes of the distinct tensors saved by the
      forward) against atoms × reflections, on n×1×1 supercells of one crystal, for several
      Q_max (invariant) and C_max (paper).

    python benchmarks/bench_models.py                       # (a) and (b), small preset
    python benchmarks/bench_models.py --preset paper        # (b) with the paper sizes
    python benchmarks/bench_models.py --scaling             # (c) as well
    python benchmarks/bench_models.py --models alignn prdnet --modes none paper
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch_geometric.data import Batch

from prdnet.audit import embedded_data_path, sample_structures
from prdnet.data.loader import structure_to_data
from prdnet.models import build_model, count_parameters, load_presets
from prdnet.models.base import crystal_geometry
from prdnet.models.diffraction import build_diffraction, miller_indices, reciprocal_sphere
from prdnet.models.registry import BACKBONES

PAPER_PARAMETERS = 20.9e6
PUBLISHED_PARAMETERS = {
    "prdnet": (20.9e6, "PRDNet paper (with its diffraction module)"),
    "alignn": (4.0e6, "ComFormer paper, cost table (JARVIS formation energy)"),
    "matformer": (2.9e6, "ComFormer paper, cost table"),
    "icomformer": (4.1e6, "ComFormer paper, cost table"),
}
"""Published parameter counts (see /work/shared/paper/published-scores.md, "Cost anchors");
the CGCNN, SchNet and MEGNet papers give none."""
MODES = (None, "paper", "invariant")


def parameter_table() -> None:
    print("## Parameters\n")
    print("| model | preset | none | paper | invariant |\n|---|---|---|---|---|")
    presets = load_presets()
    for name in BACKBONES:
        for preset in presets["models"][name]:
            counts = [
                count_parameters(build_model({"name": name, "preset": preset, "diffraction": mode}, "regression"))
                for mode in MODES
            ]
            print(f"| {name} | {preset} | " + " | ".join(f"{count:,}" for count in counts) + " |")
    paper = count_parameters(build_model({"name": "prdnet", "preset": "paper", "diffraction": "paper"}, "regression"))
    print(f"\nPRDNet paper preset with paper-mode diffraction: {paper / 1e6:.1f}M "
          f"= {paper / PAPER_PARAMETERS:.2f} × the paper's {PAPER_PARAMETERS / 1e6:.1f}M\n")
    print("## Paper-size backbones against their published counts\n")
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


def forward_backward_seconds(model: torch.nn.Module, batch: Batch) -> float:
    """Seconds of one forward + backward pass in training mode."""
    model.train()
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    model(batch).square().mean().backward()
    return time.perf_counter() - start


def timing_table(batch: Batch, preset: str, repeats: int, names=("cgcnn", "prdnet"), modes=MODES) -> None:
    diffraction = load_presets()["diffraction"][preset]
    _, lattice = crystal_geometry(batch, torch.float32)
    hkl, crystal = reciprocal_sphere(lattice, diffraction["invariant"]["q_max"], friedel_half=True)
    pairs = int(torch.bincount(batch.batch, minlength=batch.num_graphs)[crystal].sum())
    terms = batch.num_nodes * len(miller_indices(diffraction["paper"]["c_max"]))
    print(f"## Forward + backward, batch of {batch.num_graphs} crystals ({batch.num_nodes} atoms, "
          f"{batch.edge_index.shape[1]} edges), preset {preset}, {torch.get_num_threads()} thread(s)\n")
    print(f"paper mode: {terms:,} atom × Miller-index terms; "
          f"invariant mode: {len(hkl):,} reflections (half of each ±Q pair), "
          f"{pairs:,} atom–reflection pairs\n")
    variants = [(name, mode) for name in names for mode in modes]
    models = {}
    for name, mode in variants:
        torch.manual_seed(0)
        models[name, mode] = build_model({"name": name, "preset": preset, "diffraction": mode}, "regression")
    times: dict[tuple, list[float]] = {variant: [] for variant in variants}
    for round_ in range(repeats + 1):  # round 0 warms up
        for variant in variants:
            seconds = forward_backward_seconds(models[variant], batch)
            if round_:
                times[variant].append(seconds)
    print("| model | diffraction | seconds / batch (median) | ratio to backbone alone |\n|---|---|---|---|")
    for name, mode in variants:
        seconds = statistics.median(times[name, mode])
        baseline = statistics.median(times[name, None]) if (name, None) in times else float("nan")
        print(f"| {name} | {mode or 'none'} | {seconds:.3f} | {seconds / baseline:.2f} |")
    print()


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
    """Time and autograd memory of the diffraction module alone on a cells×1×1 supercell."""
    batch = Batch.from_data_list([structure_to_data(structure * (cells, 1, 1), dtype=torch.float32)])
    params = dict(load_presets()["diffraction"]["small"][mode])
    params.update({"q_max": q_max} if mode == "invariant" else {"c_max": c_max})
    torch.manual_seed(0)
    module = build_diffraction(mode, 64, params)
    frac_coords, lattice = crystal_geometry(batch, torch.float32)
    h = torch.randn(batch.num_nodes, 64, requires_grad=True)
    reflections = len(reciprocal_sphere(lattice, q_max, True)[0]) if mode == "invariant" else len(module.hkl)

    def forward():
        return module(h, frac_coords, lattice, batch.batch, 1)

    memory = saved_tensor_bytes(forward)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        forward().square().sum().backward()
        times.append(time.perf_counter() - start)
    atoms = batch.num_nodes
    return {"atoms": atoms, "reflections": reflections, "pairs": atoms * reflections,
            "seconds": statistics.median(times[1:]), "memory": memory}


def scaling_table(repeats: int) -> None:
    _, structure, _ = sample_structures(embedded_data_path(), 1, 8, pool=200, seed=1)[0]
    print(f"## Diffraction module alone, n×1×1 supercells of {structure.composition.reduced_formula} "
          f"({len(structure)} atoms, {structure.volume:.0f} Å³): forward + backward\n")
    print("| mode | setting | atoms | reflections | atoms × reflections | ms | ns per pair | "
          "saved for backward (MiB) | bytes per pair |")
    print("|---|---|---|---|---|---|---|---|---|")
    points = [("invariant", cells, 4.0, None) for cells in (1, 4, 16, 32)]
    points += [("invariant", 4, q, None) for q in (6.0, 8.0)]
    points += [("paper", cells, None, 8) for cells in (1, 4, 16, 32)]
    points += [("paper", 4, None, c) for c in (3, 5)]
    for mode, cells, q_max, c_max in points:
        result = scaling_point(structure, mode, cells, q_max, c_max, repeats)
        setting = f"{cells}×1×1, " + (f"Q_max {q_max:g} Å⁻¹" if mode == "invariant" else f"C_max {c_max}")
        print(f"| {mode} | {setting} | {result['atoms']} | {result['reflections']:,} | {result['pairs']:,} | "
              f"{1e3 * result['seconds']:.1f} | {1e9 * result['seconds'] / result['pairs']:.0f} | "
              f"{result['memory'] / 2**20:.1f} | {result['memory'] / result['pairs']:.0f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pool", type=int, default=2000, help="crystals are drawn from the first POOL of the file")
    parser.add_argument("--max-atoms", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids OpenMP spin on a busy CPU)")
    parser.add_argument("--scaling", action="store_true", help="also measure the diffraction module's scaling")
    parser.add_argument("--skip-parameters", action="store_true")
    parser.add_argument("--models", nargs="+", default=list(BACKBONES), choices=list(BACKBONES), metavar="MODEL",
                        help="backbones to time (default all)")
    parser.add_argument("--modes", nargs="+", default=["none", "paper", "invariant"],
                        choices=["none", "paper", "invariant"], help="diffraction modes to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_parameters:
        parameter_table()
    crystals = sample_structures(embedded_data_path(), args.batch_size, args.max_atoms, pool=args.pool)
    batch = Batch.from_data_list([structure_to_data(s, dtype=torch.float32) for _, s, _ in crystals])
    modes = [None if mode == "none" else mode for mode in args.modes]
    timing_table(batch, args.preset, args.repeats, args.models, modes)
    if args.scaling:
        scaling_table(args.repeats)


if __name__ == "__main__":
    main()
