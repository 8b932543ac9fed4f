"""Benchmark tables and MatBench leaderboard files from finished training jobs.

Per dataset, a table with one row per model variant (model and ablation) and, per task, the
test metric without diffraction, with each diffraction mode, and the difference (with −
without). Cells with several jobs (MatBench folds, several seeds) show mean ± standard deviation
over folds and seeds (population std, as the MatBench leaderboard). Published scores are extra rows, labelled
as published, with their source in the CSV. The Dummy baseline (``dummy``, :mod:`prdnet.guards`)
is a row like any model. A cell any of whose jobs raised a sanity flag carries ``⚠`` and the
notes under the table name each flagged job and its flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from prdnet.io import atomic_path, write_text
from prdnet.protocols import NO_PROTOCOL, check_score_protocols
from prdnet.stats import METHOD_NOTE, format_comparison, paired_t

NO_DIFFRACTION = "none"


def collect_runs(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per finished job: its labels, the registry model name and preset behind its variant
    (``architecture``, ``preset``), primary metric value, all test metrics, unit."""
    rows = []
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        run = json.loads((run_dir / "run.json").read_text())
        tags, params = run["tags"], run["params"]
        row = {**{k: tags[k] for k in ("dataset", "task", "fold", "model", "diffraction", "ablation")}}
        # the registry's model name and preset behind the config's variant name (``schnet_200ep`` → schnet)
        row.update(architecture=params.get("model.name", tags["model"]), preset=params.get("model.preset", "—"))
        # the protocol it ran under, and the keys its recipe changed of it (jobs from before protocols: none named)
        row.update(protocol=params.get("protocol.name", NO_PROTOCOL),
                   protocol_deviations=params.get("protocol.deviations", "{}"))
        row["seed"] = int(tags.get("seed", 0))  # jobs from before the seed wildcard ran seed 0
        row.update(metric=metrics["metric"], unit=metrics["unit"], value=metrics[f"test_{metrics['metric']}"])
        row.update({k: v for k, v in metrics.items() if k.startswith("test_")})
        row["flags"] = ",".join(metrics.get("flags", []))
        row.update({field: metrics.get(field) for field in COST_FIELDS})
        rows.append(row)
    return pd.DataFrame(rows)


COST_FIELDS = ("n_parameters", "seconds_per_epoch", "train_seconds", "wall_time_s", "device", "device_name", "device_count",
               "device_hours", "peak_rss_mb", "peak_cuda_mb", "crystals_per_second", "epochs_run")  # fmt: skip
"""What each training job measures of its cost (metrics.json; prdnet.training.cost)."""


def cost_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and model variant: parameters, seconds per epoch (median over jobs), training time
    per job (mean), device-hours (sum over its jobs, with the device), peak memory (largest RSS; on
    CUDA the largest ``max_memory_allocated``), training crystals per second (median)."""
    if "seconds_per_epoch" not in runs or runs["seconds_per_epoch"].isna().all():
        return pd.DataFrame()
    rows = []
    for (task, model, ablation, diffraction), group in runs.groupby(["task", "model", "ablation", "diffraction"], sort=True):
        kind = group["device"].dropna().iloc[0] if group["device"].notna().any() else "cpu"
        name = group["device_name"].dropna().iloc[0] if group["device_name"].notna().any() else ""
        hours = group["device_hours"].astype(float)
        rows.append({
            "task": task, "model": model, "ablation": ablation, "diffraction": diffraction, "jobs": len(group),
            "parameters": f"{int(group['n_parameters'].max()):,}" if group["n_parameters"].notna().any() else "—",
            "s / epoch": f"{group['seconds_per_epoch'].astype(float).median():.3g}",
            "training s / job": f"{group['train_seconds'].astype(float).mean():.3g}",
            "device-hours (all jobs)": f"{hours.sum():.3g} {'GPU' if kind.startswith('cuda') else 'CPU'}-h" + (f" ({name})" if name else ""),
            "peak RSS MB": f"{group['peak_rss_mb'].astype(float).max():.0f}",
            "peak CUDA MB": f"{group['peak_cuda_mb'].astype(float).max():.0f}" if group["peak_cuda_mb"].notna().any() else "—",
            "crystals / s": f"{group['crystals_per_second'].astype(float).median():.3g}",
        })  # fmt: skip
    return pd.DataFrame(rows)


COST_NOTE = ("Cost as each job measured it (metrics.json): s / epoch = median over jobs of the training loop's time per "
             "epoch (training and validation passes); device-hours = the job's wall time × its devices (GPUs, or the "
             "CPU threads it ran on), summed over the variant's jobs; peak RSS = the largest resident memory of a job "
             "(getrusage), peak CUDA = torch.cuda.max_memory_allocated; crystals / s = training crystals × epochs / "
             "training time. Figures from jobs that shared a machine are not timings.")


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 0), job count (folds × seeds) and flagged-job count of the primary metric per
    (task, model, ablation, diffraction); a variant's architecture and preset ride along."""
    keys = ["dataset", "task", "model", "architecture", "preset", "protocol", "protocol_deviations", "ablation",
            "diffraction", "metric", "unit"]
    flagged = runs.assign(flagged=runs["flags"].fillna("").astype(bool) if "flags" in runs else False)
    grouped = flagged.groupby(keys, sort=True)
    summary = grouped["value"].agg(mean="mean", std=lambda v: float(np.std(v)), n_folds="count")
    return summary.join(grouped["flagged"].sum().rename("n_flagged")).reset_index()


def _scale(metric: str) -> float:
    """Accuracy is shown in percent, errors in the target's unit."""
    return 100.0 if metric == "accuracy" else 1.0


FLAG_MARK = "⚠"
BEST_MARK = "★"
"""Marks the best mean of our variants on a task (lowest error, highest accuracy)."""
HIGHER_IS_BETTER = ("accuracy", "roc_auc")


def _cell(mean: float, std: float, n_folds: int, metric: str, n_flagged: int = 0) -> str:
    scale = _scale(metric)
    text = f"{mean * scale:.4g}"
    text = f"{text} ± {std * scale:.2g}" if n_folds > 1 else text
    return f"{text} {FLAG_MARK}" if n_flagged else text


METRIC_LABELS = {"accuracy": "acc. %", "roc_auc": "ROC-AUC"}


def _header(task: str, metric: str, unit: str, mode: str) -> str:
    what = METRIC_LABELS.get(metric, f"MAE {unit}".strip())
    label = "without diffraction" if mode == NO_DIFFRACTION else f"+{mode}"
    return f"{task} ({what}) {label}"


PAIR_KEYS = ["fold", "seed"]


def paired_values(runs: pd.DataFrame, task: str, first: dict[str, str], second: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The primary metric of two variants of ``task`` on the (fold, seed) pairs both ran, aligned."""
    def select(labels: dict[str, str]) -> pd.Series:
        mask = runs["task"] == task
        for key, value in labels.items():
            mask &= runs[key] == value
        return runs[mask].set_index(PAIR_KEYS)["value"]

    joined = pd.concat([select(first).rename("a"), select(second).rename("b")], axis=1, join="inner").sort_index()
    return joined["a"].to_numpy(), joined["b"].to_numpy()


def paired_comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """Every comparison the tables show, paired by fold and seed: each diffraction mode against
    none (same model and ablation), and every pair of models (same diffraction and ablation)."""
    rows = []
    for (task, metric), group in runs.groupby(["task", "metric"], sort=False):
        variants = group[["model", "ablation", "diffraction"]].drop_duplicates().sort_values(["model", "ablation", "diffraction"])
        pairs = []
        for v in variants.itertuples():
            if v.diffraction != NO_DIFFRACTION:
                pairs.append(("diffraction", {"model": v.model, "ablation": v.ablation, "diffraction": v.diffraction},
                              {"model": v.model, "ablation": v.ablation, "diffraction": NO_DIFFRACTION}))  # fmt: skip
        for (ablation, diffraction), same in variants.groupby(["ablation", "diffraction"], sort=True):
            models = sorted(same["model"])
            for i, a in enumerate(models):
                for b in models[i + 1 :]:
                    pairs.append(("model", {"model": a, "ablation": ablation, "diffraction": diffraction},
                                  {"model": b, "ablation": ablation, "diffraction": diffraction}))  # fmt: skip
        for kind, first, second in pairs:
            a, b = paired_values(group, task, first, second)
            if len(a) == 0:
                continue
            result = paired_t(a, b)
            rows.append({
                "task": task, "metric": metric, "kind": kind,
                "first": "/".join(first.values()), "second": "/".join(second.values()),
                "n_pairs": result.n_pairs, "mean_difference": result.mean_difference,
                "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value,
                "excludes_zero": result.excludes_zero, "cell": format_comparison(result, _scale(metric)),
            })  # fmt: skip
    return pd.DataFrame(rows)


def model_comparison_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Model A − model B per task, diffraction mode and ablation (paired by fold and seed)."""
    models = comparisons[comparisons["kind"] == "model"] if len(comparisons) else comparisons
    if models.empty:
        return pd.DataFrame()
    split = models["first"].str.split("/", expand=True)
    return pd.DataFrame({
        "task": models["task"], "diffraction": split[2], "ablation": split[1],
        "comparison": split[0] + " − " + models["second"].str.split("/").str[0],
        "n pairs": models["n_pairs"], "Δ [95% CI] p": models["cell"],
    }).reset_index(drop=True)  # fmt: skip


RATIO_COLUMNS = ["task", "model", "ablation", "preset", "jobs", "flagged_jobs", "ours_mean", "ours_std",
                 "published_model", "published_value", "protocol", "ours_protocol", "protocol_deviations",
                 "same_protocol", "ratio", "ratio_other_protocol", "source"]


def protocol_description(ours: str, deviations: str, published: str) -> str:
    """How our run's protocol stands to the published score's, in words."""
    changed = json.loads(deviations or "{}")
    if ours == published and not changed:
        return f"same ({published})"
    if ours == published:
        keys = ", ".join(f"{key} {value[0]} (protocol: {value[1]})" for key, value in sorted(changed.items()))
        return f"{published} changed: {keys}"
    ours_text = "the preset's own recipe" if ours == NO_PROTOCOL else ours
    return f"differs: ours {ours_text}, published {published or 'unnamed'}"


def published_ratios(summary: pd.DataFrame, published: list[dict[str, Any]]) -> pd.DataFrame:
    """Each of our variants beside the published score of the same model, and their ratio when
    both were made under the same protocol.

    A published score names our model with ``ours`` (a registry name: ``cgcnn``, ``dummy``, ...)
    and the protocol it was made under with ``protocol`` (config/protocols.yaml); it is set beside
    every variant of :func:`summarise` (config name, ablation) that ran that model on the same
    task, metric and unit, under the score's diffraction column (default none). ``ratio`` =
    ours_mean / published_value (for an error, above 1 is worse than published) only where the
    variant ran the score's protocol and changed none of its keys (``same_protocol``); elsewhere
    it is empty and ``ratio_other_protocol`` holds the quotient, which compares two numbers made
    in different ways. Values are in the table's unit (accuracy in %); ``flagged_jobs`` counts the
    jobs a sanity guard flagged (``⚠`` in the Markdown)."""
    rows = []
    for score in published:
        if "ours" not in score:
            continue
        metric, unit = score.get("metric", "mae"), score.get("unit", "")
        mask = ((summary["task"] == score["task"]) & (summary["architecture"] == score["ours"])
                & (summary["metric"] == metric) & (summary["unit"] == unit)
                & (summary["diffraction"] == score.get("diffraction", NO_DIFFRACTION)))  # fmt: skip
        for r in summary[mask].itertuples():
            mean, value = r.mean * _scale(metric), float(score["value"])
            protocol = str(score.get("protocol", ""))
            same = bool(protocol) and r.protocol == protocol and json.loads(r.protocol_deviations or "{}") == {}
            rows.append({
                "task": r.task, "model": r.model, "ablation": r.ablation, "preset": r.preset, "jobs": r.n_folds,
                "flagged_jobs": r.n_flagged, "ours_mean": mean, "ours_std": r.std * _scale(metric),
                "published_model": score["model"], "published_value": value, "protocol": protocol,
                "ours_protocol": r.protocol, "protocol_deviations": r.protocol_deviations, "same_protocol": same,
                "ratio": mean / value if same else float("nan"),
                "ratio_other_protocol": float("nan") if same else mean / value,
                "source": score.get("source", ""),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def ratio_table(ratios: pd.DataFrame) -> pd.DataFrame:
    """:func:`published_ratios` as the Markdown shows it: the ratio only under the same protocol."""
    ratio_text = [f"{r:.2f}" if same else f"— ({other:.2f} under another protocol)"
                  for r, other, same in zip(ratios["ratio"], ratios["ratio_other_protocol"], ratios["same_protocol"])]
    return pd.DataFrame({
        "task": ratios["task"], "model": ratios["model"], "ablation": ratios["ablation"], "preset": ratios["preset"],
        "jobs": ratios["jobs"],
        "ours": [_cell(m, s, n, "mae", flagged)  # values already in the table's unit
                 for m, s, n, flagged in zip(ratios["ours_mean"], ratios["ours_std"], ratios["jobs"], ratios["flagged_jobs"])],
        "published": [f"{m}: {v:.4g}" for m, v in zip(ratios["published_model"], ratios["published_value"])],
        "protocol": [protocol_description(o, d, p) for o, d, p in
                     zip(ratios["ours_protocol"], ratios["protocol_deviations"], ratios["protocol"])],
        "ratio": ratio_text,
    })  # fmt: skip


def wide_table(summary: pd.DataFrame, published: list[dict[str, Any]], comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows: model variants then published scores; columns per task: without, +mode, Δ mode
    (with ``comparisons`` from :func:`paired_comparisons`: the paired Δ, its interval and p)."""
    paired = {}
    if comparisons is not None and len(comparisons):
        for c in comparisons[comparisons["kind"] == "diffraction"].itertuples():
            model, ablation, mode = c.first.split("/")
            paired[(c.task, model, ablation, mode)] = c.cell
    tasks = list(dict.fromkeys(summary["task"]))
    modes = [NO_DIFFRACTION] + sorted(set(summary["diffraction"]) - {NO_DIFFRACTION})
    best = {}
    for task, group in summary.groupby("task", sort=False):
        chosen = group["mean"].idxmax() if group["metric"].iloc[0] in HIGHER_IS_BETTER else group["mean"].idxmin()
        best[task] = (group.loc[chosen, "model"], group.loc[chosen, "ablation"], group.loc[chosen, "diffraction"])
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for (model, ablation), group in summary.groupby(["model", "ablation"], sort=True):
        row = {}
        for task in tasks:
            cells = {r.diffraction: r for r in group[group["task"] == task].itertuples()}
            for mode in modes:
                if mode in cells:
                    r = cells[mode]
                    cell = _cell(r.mean, r.std, r.n_folds, r.metric, r.n_flagged)
                    row[_header(task, r.metric, r.unit, mode)] = f"{cell} {BEST_MARK}" if best[task] == (model, ablation, mode) else cell
                if mode != NO_DIFFRACTION and mode in cells and NO_DIFFRACTION in cells:
                    r, base = cells[mode], cells[NO_DIFFRACTION]
                    row[f"{task} Δ {mode}"] = paired.get((task, model, ablation, mode),
                                                         f"{(r.mean - base.mean) * _scale(r.metric):+.3g}")  # fmt: skip
        rows[(model, ablation)] = row
    extra_columns: dict[str, list[str]] = {task: [] for task in tasks}
    for score in published:
        if score["task"] not in tasks:
            continue
        metric = score.get("metric", "mae")
        unit = score.get("unit", "")
        # a published model with the diffraction module (PRDNet) sits under our "+paper" column
        mode = score.get("diffraction", NO_DIFFRACTION)
        column = _header(score["task"], metric, unit, mode if mode in modes else NO_DIFFRACTION)
        extra_columns[score["task"]].append(column)
        label = (f"{score['model']} (published)", score.get("ablation", "—"))
        rows[label] = {**rows.get(label, {}), column: f"{score['value']:.4g}"}
    ordered_columns = []
    for task in tasks:
        metric_row = summary[summary["task"] == task].iloc[0]
        for mode in modes:
            ordered_columns.append(_header(task, metric_row.metric, metric_row.unit, mode))
            if mode != NO_DIFFRACTION:
                ordered_columns.append(f"{task} Δ {mode}")
        # published metrics we do not compute as the primary one (e.g. MatBench ROC-AUC) get their own column
        ordered_columns += [c for c in dict.fromkeys(extra_columns[task]) if c not in ordered_columns]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table.reindex(columns=[c for c in ordered_columns if c in table.columns]).fillna("—")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["model", "ablation"])
    return table.reset_index()


def markdown(table: pd.DataFrame, title: str, notes: list[str]) -> str:
    """A Markdown table with a title and notes."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([f"# {title}", "", header, rule, *body, "", *[f"- {n}" for n in notes]]) + "\n"


def load_published(path: str | Path | None, dataset: str) -> list[dict[str, Any]]:
    """The published scores of ``dataset`` from the scores file (empty if none).

    A score names one ``dataset`` or several (``datasets``, a list: the same protocol reached
    through several dataset names, e.g. a MatBench task at two locations)."""
    if not path:
        return []
    scores = yaml.safe_load(Path(path).read_text())["scores"]
    chosen = [s for s in scores if dataset == s.get("dataset") or dataset in s.get("datasets", [])]
    check_score_protocols(chosen, str(path))
    return chosen


def flag_notes(runs: pd.DataFrame) -> list[str]:
    """One note per flagged job: where it is and which sanity guards fired (prdnet.guards)."""
    flagged = runs[runs["flags"].fillna("").astype(bool)] if "flags" in runs else runs.iloc[:0]
    return [f"{FLAG_MARK} {r.task}/{r.fold}/{r.model}/{r.diffraction}/{r.ablation}: {r.flags.replace(',', ', ')}"
            for r in flagged.sort_values(["task", "model", "fold"]).itertuples()]  # fmt: skip


RATIO_NOTE = ("ratio = our mean / the published value, for the published score that names our model (`ours:` in "
              "the scores file), given only where our run used the score's protocol (`protocol:` in the scores file, "
              "config/protocols.yaml: recipe, validation, weights tested, target scaling) and changed none of its "
              "keys; elsewhere the quotient is shown in brackets, as a comparison of numbers made in different ways.")


def split_audit(splits_dir: Path | None) -> list[dict[str, Any]]:
    """One row per task and fold of a dataset's splits: ``task``, ``fold``, the sizes (``train``,
    ``val``, ``test``), the held-out ``cluster`` of out-of-distribution kinds ("" otherwise), the
    leakage ``action`` and, for ``val`` and ``test``, the leakage audit's counts (``splits/summary.json``,
    ``splits/leakage.json``); none when the files are not there."""
    if splits_dir is None or not (splits_dir / "summary.json").exists() or not (splits_dir / "leakage.json").exists():
        return []
    summary = json.loads((splits_dir / "summary.json").read_text())
    audit = json.loads((splits_dir / "leakage.json").read_text())
    rows = []
    for task, folds in audit["splits"].items():
        for fold, parts in folds.items():
            sizes = summary.get(task, {}).get(fold, {})
            rows.append({"task": task, "fold": fold, **{name: sizes.get(name) for name in ("train", "val", "test")},
                         "cluster": sizes.get("cluster", ""), "action": audit["action"],
                         "shared": {part: parts[part] for part in ("val", "test")}})  # fmt: skip
    return rows


def shortened(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 3] + "..."


def split_notes(splits_dir: Path | None) -> list[str]:
    """One note per task and fold (:func:`split_audit`): the split's sizes, what it held out and
    how many val/test crystals share a duplicate, a formula or a prototype with training."""
    notes = []
    for row in split_audit(splits_dir):
        shared = "; ".join(f"{part} {c['duplicate']} duplicate / {c['polymorph']} polymorph / {c['prototype']} prototype"
                           for part, c in row["shared"].items())  # fmt: skip
        notes.append(f"split {row['task']} {row['fold']}: train {row['train']}, val {row['val']}, test {row['test']}"
                     + (f" (held out: {shortened(row['cluster'], 80)})" if row["cluster"] else "")
                     + f"; crystals sharing with training ({row['action']}): {shared}.")  # fmt: skip
    return notes


def write_tables(dataset: str, run_dirs: list[Path], published_path: str | Path | None, out_prefix: Path,
                 splits_dir: Path | None = None) -> pd.DataFrame:  # fmt: skip
    """Write ``<prefix>.md``, ``<prefix>.csv`` (the wide table), ``<prefix>_runs.csv`` (every job) and
    ``<prefix>_paired.csv`` (every paired comparison: :func:`paired_comparisons`) and
    ``<prefix>_published.csv`` (:func:`published_ratios`; only its header where no published score
    names one of the models that ran). ``splits_dir`` (the dataset's ``splits/``) adds each split's
    sizes and leakage counts to the notes (:func:`split_notes`)."""
    runs = collect_runs(run_dirs)
    summary = summarise(runs)
    published = load_published(published_path, dataset)
    comparisons = paired_comparisons(runs)
    table = wide_table(summary, published, comparisons)
    folds = sorted(set(runs["fold"]))
    seeds = sorted(set(runs["seed"]))
    notes = [
        f"Test-set metric of each job; {len(folds)} fold(s): {', '.join(folds)}; {len(seeds)} seed(s): "
        f"{', '.join(map(str, seeds))}" + (" (mean ± std over folds and seeds)" if len(folds) * len(seeds) > 1 else "") + ".",
        "Δ = with diffraction − without (negative is better for MAE, positive for accuracy).",
        f"{BEST_MARK} = the best mean of our variants on the task (the Dummy included).",
        "dummy = the Dummy baseline: mean of the training targets (majority class for classification), "
        "fitted on the training and validation parts of each fold.",
        *flag_notes(runs),
        *split_notes(splits_dir),
        METHOD_NOTE,
        *[f"{s['model']} (published): {s['source']}" for s in published],
    ]
    text = markdown(table, f"{dataset}: test scores", notes)
    ratios = published_ratios(summary, published)
    if not ratios.empty:
        text += "\n" + markdown(ratio_table(ratios), "Ours against published", [RATIO_NOTE]).replace("# ", "## ", 1)
    costs = cost_table(runs)
    if not costs.empty:
        text += "\n" + markdown(costs, "Cost", [COST_NOTE]).replace("# ", "## ", 1)
    models = model_comparison_table(comparisons)
    if not models.empty:
        text += "\n" + markdown(models, "Model against model (paired by fold and seed)", [METHOD_NOTE]).replace("# ", "## ", 1)
    write_text(out_prefix.with_suffix(".md"), text)
    with atomic_path(out_prefix.parent / f"{out_prefix.name}_paired.csv") as temporary:
        comparisons.to_csv(temporary, index=False)
    with atomic_path(out_prefix.parent / f"{out_prefix.name}_published.csv") as temporary:
        ratios.to_csv(temporary, index=False)
    with atomic_path(out_prefix.with_suffix(".csv")) as temporary:
        table.to_csv(temporary, index=False)
    with atomic_path(out_prefix.parent / f"{out_prefix.name}_runs.csv") as temporary:
        runs.sort_values(["task", "model", "ablation", "diffraction", "fold", "seed"]).to_csv(temporary, index=False)
    return table


def write_matbench_results(
    benchmark_task: str, matminer_data: str | None, fold_predictions: dict[str, Path], out_path: Path,
    metadata: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Record each fold's test predictions through ``MatbenchBenchmark.record`` and write the
    leaderboard file with ``to_file``. Every official test id needs a prediction."""
    from prdnet.data.sources.matbench import open_matbench_task

    benchmark, task = open_matbench_task(benchmark_task, matminer_data)
    classification = task.metadata["task_type"] == "classification"
    for fold in task.folds:
        predictions = pd.read_parquet(fold_predictions[f"fold{fold}"]).set_index("id")
        test_ids = task.get_test_data(fold, include_target=False).index
        missing = test_ids.difference(predictions.index)
        if len(missing):
            raise ValueError(f"{benchmark_task} fold{fold}: no prediction for {len(missing)} official test ids "
                             f"(e.g. {list(missing[:5])}); a leaderboard file needs all of them")  # fmt: skip
        values = predictions.loc[test_ids, "predicted"].to_numpy()
        task.record(fold, values.astype(bool) if classification else values)
    benchmark.add_metadata(metadata)
    with atomic_path(out_path) as temporary:
        benchmark.to_file(str(temporary))  # matbench 0.6 writes JSON text whatever the name
    return dict(task.scores)
