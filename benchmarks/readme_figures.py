"""The README's speed figures and its cost estimate, computed from the benchmarks' result files.

    python benchmarks/readme_figures.py            # print the blocks
    python benchmarks/readme_figures.py --write    # put them into README.md
    python benchmarks/readme_figures.py --check    # exit 1 if README.md differs from them

The README holds each block between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``;
``tests/test_benchmark_figures.py`` checks that what is there is what this script computes, so a
figure cannot be edited by hand or outlive the measurement it came from.

Blocks:

``attention``  PRDNet's attention against Matformer, forward + backward on one CPU thread
               (``benchmarks/results/attention.json``, written by ``bench_attention.py``).
``cost``       GPU hours of the paper's plan (``config/paper.yaml``) and of ``config/full.yaml``.
``make_run``   wall time of the default ``make run`` (``benchmarks/results/make_run.json``, written
               by ``time_make_run.py``).

The cost model, per training job (every experiment × task × fold × model × diffraction ×
ablation × seed of the config, each once; the Dummy's aside)::

    GPU seconds = r_model × 64 s × N_train / 44,578 × epochs

* 64 s per epoch of 44,578 training crystals: Matformer on an RTX A6000, JARVIS formation energy
  (Matformer paper, NeurIPS 2022; ../shared/paper/published-scores.md, "Cost anchors");
* r_model, the model's time per crystal over Matformer's: PRDNet's from ``attention.json`` (the
  median of the per-round ratios, forward + backward on a CPU; the range uses the smallest and
  largest round), iComFormer 69/64 and ALIGNN 327/64 from the same published table; CGCNN,
  SchNet and MEGNet, with no published anchor, at 1 (their CPU time is below Matformer's);
* N_train, the training crystals of the dataset and task (:data:`TRAINING_CRYSTALS`);
* epochs: the job's recipe (the model preset's, its protocol's, then the config's ``training``
  and the spec's own keys; no early stopping:
  an upper bound). The diffraction plug-in's own cost is not in r_model.

A CPU ratio carried over to a GPU is an assumption (the per-edge work of PRDNet and the
gathers of Matformer need not scale alike); ``benchmarks/gpu_check.sh`` measures the GPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

MATFORMER_SECONDS_PER_EPOCH = 64.0
ANCHOR_TRAINING_CRYSTALS = 44_578
PUBLISHED_X_MATFORMER = {"matformer": 1.0, "icomformer": 69.0 / 64.0, "alignn": 327.0 / 64.0}
"""Published A6000 epoch times over Matformer's (same table, same task)."""
UNANCHORED = ("cgcnn", "schnet", "megnet")
"""Models with no published GPU time: taken at Matformer's."""

MATBENCH_SIZES = {
    "matbench_dielectric": 4_764, "matbench_jdft2d": 636, "matbench_log_gvrh": 10_987,
    "matbench_log_kvrh": 10_987, "matbench_mp_e_form": 132_752, "matbench_mp_gap": 106_113,
    "matbench_mp_is_metal": 106_113, "matbench_perovskites": 18_928, "matbench_phonons": 1_265,
}
"""Entries per MatBench v0.1 task; a fold trains on 80% of them, less the 10% validation carve-out."""

TRAINING_CRYSTALS: dict[str, dict[str, int]] = {
    # the paper's MP set, 122,959 entries, 80% train; about 12,000 entries carry elastic moduli
    "mp_live": {"*": 98_367, "bulk_modulus": 9_600, "shear_modulus": 9_600, "youngs_modulus": 9_600},
    # JARVIS-DFT 2021, 80% train of the entries with the property (Matformer paper, JARVIS table)
    "jarvis_dft_3d_2021": {"*": 44_578, "ehull": 44_296, "mbj_bandgap": 14_537, "bulk_modulus": 14_537,
                           "shear_modulus": 14_537},
    **{name: {"*": round(size * 0.8 * 0.9)} for name, size in MATBENCH_SIZES.items()},
}
"""Training crystals per dataset and task ("*": every other task). ``mp_2018`` reads its counts
from the config's split."""


# --- reading the results -------------------------------------------------------------------


def load_result(name: str, results: Path = RESULTS) -> dict[str, Any]:
    path = results / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run benchmarks/bench_{name}.py first")
    return json.loads(path.read_text())


def prdnet_ratios(attention: dict) -> dict[str, dict[str, float]]:
    """PRDNet preset → {median, min, max} of its time over Matformer's."""
    return {
        config.split(":")[0]: {key: row["x_matformer"][key] for key in ("median", "min", "max")}
        for config, row in attention["figures"]["configs"].items()
        if config.endswith(":after") and "x_matformer" in row
    }


def conditions(record: dict) -> str:
    """CPU, threads, torch, the measured code's commit, date and load average of a record."""
    load_before, load_after = record["load_before"][0], record["load_after"][0]
    measured = record.get("checkout_commit")  # time_make_run.py measures another checkout, clean by need
    commit = (measured or record.get("commit") or "unknown")[:7]
    dirty = " with uncommitted changes" if record.get("uncommitted_changes") and not measured else ""
    return (f"{record['cpu']}, {record['threads']} thread(s), torch {record['torch']}, commit {commit}{dirty}, "
            f"{record['finished'][:10]}, load average {load_before:.2f} before and {load_after:.2f} after")


# --- the attention block -------------------------------------------------------------------


def attention_block(attention: dict) -> str:
    figures = attention["figures"]
    rounds = len(attention["rounds"])
    lines = [
        f"Forward + backward of one batch of {attention['batch_size']} embedded MP crystals, each model on its "
        f"own graph recipe, median of {rounds} interleaved rounds ({conditions(attention)}; "
        "`benchmarks/results/attention.json`, `python benchmarks/bench_attention.py`):",
        "",
        "| configuration | edges | seconds (min–max) | × Matformer (min–max) | peak RSS above a bare process |",
        "| --- | --- | --- | --- | --- |",
    ]
    for config, row in figures["configs"].items():
        seconds, ratio = row["seconds"], row.get("x_matformer")
        shown_ratio = f"{ratio['median']:.2f} ({ratio['min']:.2f}–{ratio['max']:.2f})" if ratio else "–"
        lines.append(
            f"| {config} | {row['edges']:,} | {seconds['median']:.2f} ({seconds['min']:.2f}–{seconds['max']:.2f}) | "
            f"{shown_ratio} | {row['peak_rss_above_bare_mib']['median']:,.0f} MiB |"
        )
    return "\n".join(lines)


# --- the cost block ------------------------------------------------------------------------


def training_crystals(config: dict, dataset: str, task: str) -> int:
    split = config["datasets"][dataset].get("split", {})
    if split.get("counts"):
        return int(split["counts"][task][0])
    sizes = TRAINING_CRYSTALS[dataset]
    return sizes.get(task, sizes["*"])


def planned_jobs(config: dict, presets: dict) -> list[dict]:
    """Every training job of a config (the Dummy's aside), each once, under the first experiment
    that asks for it: dataset, task, model, preset, epochs, training crystals."""
    training = config.get("training", {})
    seeds = training.get("seeds") or [training.get("seed", 0)]
    from prdnet.training.recipe import protocol_recipe

    jobs: dict[tuple, dict] = {}
    for index, experiment in enumerate(config["experiments"]):
        for dataset in experiment["datasets"]:
            folds = 5 if dataset in MATBENCH_SIZES else 1
            tasks = experiment.get("tasks") or config["datasets"][dataset]["tasks"]
            for task, model, fold, diffraction, ablation, seed in itertools.product(
                tasks, experiment["models"], range(folds), experiment["diffraction"], experiment["ablations"], seeds
            ):
                spec = config["models"][model]
                # the preset's recipe, its protocol's keys, then the config's and the spec's training keys
                recipe = {"epochs": 500, **protocol_recipe(spec), **training, **(spec.get("training") or {})}
                key = (dataset, task, fold, model, diffraction, ablation, seed)
                jobs.setdefault(key, {"experiment": index, "dataset": dataset, "task": task, "name": spec["name"],
                                      "preset": spec["preset"], "jobs": 1,
                                      "epochs": recipe["epochs"],
                                      "crystals": training_crystals(config, dataset, task)})
    return list(jobs.values())


def gpu_hours(job: dict, ratios: dict[str, dict[str, float]], key: str) -> float:
    if job["name"] == "prdnet":
        ratio = ratios[job["preset"]][key]
    else:
        ratio = PUBLISHED_X_MATFORMER.get(job["name"], 1.0)
    seconds = ratio * MATFORMER_SECONDS_PER_EPOCH * job["crystals"] / ANCHOR_TRAINING_CRYSTALS * job["epochs"]
    return job["jobs"] * seconds / 3600.0


def cost_table(config_path: Path, ratios: dict, presets: dict) -> list[str]:
    config = yaml.safe_load(config_path.read_text())
    jobs = planned_jobs(config, presets)
    lines = [f"`{config_path.relative_to(ROOT)}`:", "",
             "| experiment | datasets | models | jobs | GPU hours (A6000), median ratio (range) |",
             "| --- | --- | --- | --- | --- |"]
    totals = {"jobs": 0, "median": 0.0, "min": 0.0, "max": 0.0}
    for index, experiment in enumerate(config["experiments"]):
        part = [job for job in jobs if job["experiment"] == index]
        hours = {key: sum(gpu_hours(job, ratios, key) for job in part) for key in ("median", "min", "max")}
        count = sum(job["jobs"] for job in part)
        for key in hours:
            totals[key] += hours[key]
        totals["jobs"] += count
        datasets = ", ".join(experiment["datasets"]) if len(experiment["datasets"]) <= 3 else \
            f"{len(experiment['datasets'])} datasets"
        lines.append(f"| {index + 1} | {datasets} | {', '.join(experiment['models'])} | {count} | "
                     f"{hours['median']:,.0f} ({hours['min']:,.0f}–{hours['max']:,.0f}) |")
    lines.append(f"| all | | | {totals['jobs']} | {totals['median']:,.0f} ({totals['min']:,.0f}–{totals['max']:,.0f}) |")
    return lines


def cost_block(attention: dict, presets: dict) -> str:
    ratios = prdnet_ratios(attention)
    stated = "; ".join(f"`{preset}` {r['median']:.2f}× Matformer ({r['min']:.2f}–{r['max']:.2f})"
                       for preset, r in sorted(ratios.items()))
    lines = [f"Upper bounds (every job to its last epoch), from PRDNet's measured time over Matformer's ({stated}; "
             f"{conditions(attention)}) and the cost model of `benchmarks/readme_figures.py`:", ""]
    for name in ("paper.yaml", "full.yaml"):
        lines += cost_table(ROOT / "config" / name, ratios, presets) + [""]
    return "\n".join(lines).rstrip()


# --- the make run block -------------------------------------------------------------------


def make_run_block(record: dict) -> str:
    wall, figures = record["figures"]["wall_seconds"], record["figures"]
    cpu = figures["user_seconds"]["median"] + figures["system_seconds"]["median"]
    return (f"{wall['median'] / 60:.1f} minutes on {record['cpu_count']} CPU cores: {wall['median']:.0f} s wall, "
            f"median of {wall['n']} rounds from an empty results folder ({wall['min']:.0f}–{wall['max']:.0f} s; "
            f"{cpu:.0f} CPU seconds, of which the {figures['jobs']} jobs' own training "
            f"{figures['jobs_wall_time_s']['median']:.0f} s; {conditions(record)}; "
            "`benchmarks/results/make_run.json`, `python benchmarks/time_make_run.py`)")


# --- the leakage audit block ---------------------------------------------------------------


def leakage_audit_block(record: dict) -> str:
    figures = record["figures"]
    audit, test = figures["audit_s"], figures["leakage"]["formation_energy"]["fold0"]["test"]
    ratio = figures["audit_over_prepare"]
    return (f"On the whole embedded MP set ({figures['crystals']:,} crystals, random 80/10/10) the audit finds, of "
            f"{test['size']:,} test crystals, {test['duplicate']} duplicating a training crystal, {test['polymorph']} "
            f"polymorphs of one and {test['prototype']:,} ({test['prototype'] / test['size']:.0%}) sharing a prototype "
            f"with one. It takes {audit['median']:.0f} s on {record['cpu_count']} cores (the groups step with "
            f"{record['threads']} workers plus the split step: median of {audit['n']} rounds, {audit['min']:.0f}–"
            f"{audit['max']:.0f} s; {ratio['median']:.1f}× the `prepare` step measured in the same rounds; "
            f"{conditions(record)}; `benchmarks/results/leakage_audit.json`, `python benchmarks/time_leakage_audit.py`).")


# --- the README ----------------------------------------------------------------------------


def blocks(results: Path = RESULTS) -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from prdnet.models.registry import load_presets

    attention = load_result("attention", results)
    return {"attention": attention_block(attention), "cost": cost_block(attention, load_presets()),
            "make_run": make_run_block(load_result("make_run", results)),
            "leakage_audit": leakage_audit_block(load_result("leakage_audit", results))}


def marker(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- figures:{name} -->\n)(.*?)(<!-- /figures:{name} -->)", re.S)


def with_blocks(readme: str, computed: dict[str, str]) -> str:
    for name, text in computed.items():
        pattern = marker(name)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- figures:{name} --> ... <!-- /figures:{name} --> block")
        readme = pattern.sub(lambda match: match.group(1) + text + "\n" + match.group(3), readme)
    return readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="update README.md")
    action.add_argument("--check", action="store_true", help="exit 1 if README.md differs")
    args = parser.parse_args()
    computed = blocks()
    if not (args.write or args.check):
        for name, text in computed.items():
            print(f"<!-- figures:{name} -->\n{text}\n<!-- /figures:{name} -->\n")
        return
    readme = README.read_text()
    updated = with_blocks(readme, computed)
    if args.check:
        if updated != readme:
            raise SystemExit("README.md's figures differ from benchmarks/results: run benchmarks/readme_figures.py --write")
        print("README.md's figures match benchmarks/results")
        return
    README.write_text(updated)
    print("README.md updated")


if __name__ == "__main__":
    main()
