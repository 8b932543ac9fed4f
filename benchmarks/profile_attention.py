"""Where PRDNet's time goes: the operations that dominate its forward and its backward pass, and
the multiply-adds each per-edge product does per edge.

For PRDNet's ``paper`` and ``reference`` presets (and Matformer's ``paper`` for comparison) on
the batch of ``bench_attention.py`` (16 embedded crystals, one thread): after one untimed pass,
``torch.profiler`` over the forward pass and, separately, over the backward pass; the operations
with the most self CPU time in each (``--top``), the share of all matrix products (``aten::mm``,
``addmm``, ``bmm``) and the analytic multiply-adds per edge and layer of the per-edge products
(:func:`per_edge_macs`), and this core's float32 matrix-product rate on the shapes those products
have (:func:`matrix_product_rates`, ``--rounds`` rounds): with the multiply-adds it bounds how fast
the layers can be. Results in ``benchmarks/results/attention_profile.json``.

    python benchmarks/profile_attention.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_attention import embedded_batch, model_spec  # noqa: E402
from record import Recording  # noqa: E402

MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def per_edge_macs(backbone: dict) -> dict[str, int]:
    """Multiply-adds per edge and layer, forward, of the products made per edge (H heads of
    width D, S = 3 slots, e_ij of width d_e: the paper's RBF ⊕ SBF ⊕ d, the reference's F);
    the backward pass does two of each (gradients of input and weight), and the reference's
    W_out once more (its messages are recomputed block by block)."""
    heads, width = backbone["heads"], backbone["head_dim"]
    if backbone["variant"] == "paper":
        edge_width = backbone["rbf_bins"] + backbone["sbf_bins"] + 1
    else:
        edge_width = backbone["channels"]
    macs = {
        "(W_c W_e) e_ij, the edge slot of W_msg v_ij": heads * 3 * width * edge_width,
        "W_e e_ij, the edge slot of the keys": heads * width * edge_width,
    }
    if backbone["variant"] == "reference":
        macs["W_out on every message"] = heads * 3 * width * width
    macs["element-wise values per edge (gathers, α, LayerNorm, σ, products)"] = heads * 3 * width
    return macs


RATE_SHAPES = {
    "2048 × 2048 × 2048 (square)": (2048, 2048, 2048),
    "block of W_out: 336 × 768 × 256": (336, 768, 256),
    "(W_c W_e) e_ij, reference: 5772 × 256 × 6144": (5772, 256, 6144),
}
"""(rows, inner, columns) of the timed products."""


def matrix_product_rates(rounds: int) -> dict[str, dict]:
    """Multiply-adds per second (×1e9) of float32 products of :data:`RATE_SHAPES`, one per round."""
    import time

    from record import spread

    rates = {}
    for name, (rows, inner, columns) in RATE_SHAPES.items():
        a, b = torch.randn(rows, inner), torch.randn(inner, columns)
        a @ b  # untimed
        measured = []
        for _ in range(rounds):
            start = time.perf_counter()
            a @ b
            measured.append(rows * inner * columns / (time.perf_counter() - start) / 1e9)
        rates[name] = spread(measured)
    return rates


def top_operations(prof, top: int) -> dict:
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS)
    return {
        "self_cpu_seconds": total / 1e6,
        "matrix_product_share": products / total if total else 0.0,
        "operations": [{"name": e.key, "self_cpu_seconds": e.self_cpu_time_total / 1e6, "calls": e.count}
                       for e in events[:top]],  # fmt: skip
    }


def profile_config(config: str, top: int) -> dict:
    from prdnet.models import build_model
    from prdnet.models.registry import resolve_spec

    spec = model_spec(config)
    batch = embedded_batch(spec, 16, 200, 2000)
    torch.manual_seed(0)
    model = build_model(spec, "regression").train()
    model(batch).square().mean().backward()  # untimed pass
    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU]) as forward:
        loss = model(batch).square().mean()
    with profile(activities=[ProfilerActivity.CPU]) as backward:
        loss.backward()
    result = {"edges": int(batch.edge_index.shape[1]), "atoms": batch.num_nodes,
              "forward": top_operations(forward, top), "backward": top_operations(backward, top)}  # fmt: skip
    if config != "matformer":
        result["per_edge_macs"] = per_edge_macs(resolve_spec(spec)["backbone"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["paper:after", "reference:after", "matformer"])
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each matrix-product rate")
    parser.add_argument("--results", help="JSON file (default: benchmarks/results/attention_profile.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recording = Recording("attention_profile", 1, args.results)
    recording.start()
    figures = {}
    for config in args.configs:
        figures[config] = result = profile_config(config, args.top)
        print(f"## {config}: {result['edges']:,} edges")
        for phase in ("forward", "backward"):
            part = result[phase]
            print(f"{phase}: {part['self_cpu_seconds']:.2f} s, matrix products {100 * part['matrix_product_share']:.0f}%")
            for op in part["operations"][:6]:
                print(f"    {op['name']:<40} {op['self_cpu_seconds']:7.3f} s  {op['calls']:>6} calls")
        for name, macs in result.get("per_edge_macs", {}).items():
            print(f"  per edge and layer: {name}: {macs:,}")
    figures["matrix_product_gmac_per_s"] = rates = matrix_product_rates(args.rounds)
    for name, rate in rates.items():
        print(f"float32 product {name}: {rate['median']:.1f} GMAC/s ({rate['min']:.1f}–{rate['max']:.1f})")
    path = recording.write(figures, [], batch_size=16)
    print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
