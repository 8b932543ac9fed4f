"""One self-contained HTML file of a benchmark run: every picture embedded as a PNG data URI, no
script, no network. Per dataset: the rejects summary, the tables (published rows, paired
statistics), per task a bar chart of every model with and without each diffraction mode (mean and
± std over folds and seeds), and per job a parity plot (test set) and a learning curve. Then the
invariance audit (``<results>/audit.md``, written by ``python -m prdnet.audit > results/audit.md``)
when present, and the provenance: git commits, data versions, the configuration.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from prdnet.io import write_text
from prdnet.plots import METRIC_NAMES, bar_chart_png, error_cost_png, generalization_png, job_plots
from prdnet.report import _scale, collect_runs, load_published, paired_comparisons, shortened, split_audit

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; }
th { background: #eee; }
figure { display: inline-block; margin: 0.3em; vertical-align: top; }
figcaption { font-size: 0.75em; max-width: 320px; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.notes li { font-size: 0.85em; }
"""


def png_tag(png: bytes, alt: str, kind: str) -> str:
    """An <img> with the PNG inlined as a data URI (``data-kind`` names the plot type)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" data-kind="{kind}">'


def figure_tag(png: bytes, caption: str, kind: str) -> str:
    return f"<figure>{png_tag(png, caption, kind)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def markdown_to_html(text: str) -> str:
    """The Markdown this project writes (headings, pipe tables, bullet lists, paragraphs) as HTML."""
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].rstrip()
        if line.startswith("|"):
            block = []
            while index < len(lines) and lines[index].startswith("|"):
                block.append([cell.strip() for cell in lines[index].strip().strip("|").split("|")])
                index += 1
            body = [row for row in block[1:] if not all(set(cell) <= set("-: ") for cell in row)]
            head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block[0])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            continue
        if line.startswith("- "):
            items = []
            while index < len(lines) and lines[index].startswith("- "):
                items.append(f"<li>{html.escape(lines[index][2:].strip())}</li>")
                index += 1
            out.append(f'<ul class="notes">{"".join(items)}</ul>')
            continue
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)  # the page's own h1/h2 stay on top
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
        index += 1
    return "\n".join(out)


def variant_label(model: str, ablation: str) -> str:
    return model if ablation == "default" else f"{model} {ablation}"


def task_bar_chart(runs: pd.DataFrame, dataset: str, task: str, published: list[dict[str, Any]] | None = None) -> bytes:
    """Mean and std (ddof 0) over each bar's own jobs (folds × seeds) per model variant and
    diffraction mode, with the job count on each bar, ``*`` where the paired Δ against no
    diffraction excludes zero (:func:`prdnet.report.paired_comparisons`), the best bar outlined
    and the published value naming a model (``ours:``) as a dashed line."""
    group = runs[runs["task"] == task]
    metric, unit = group["metric"].iloc[0], group["unit"].iloc[0]
    scale = _scale(metric)
    summary = group.groupby(["model", "ablation", "diffraction"], sort=True)["value"].agg(
        mean=lambda v: v.mean() * scale, std=lambda v: v.std(ddof=0) * scale, n="count").reset_index()  # fmt: skip
    summary["label"] = [variant_label(m, a) for m, a in zip(summary["model"], summary["ablation"])]
    comparisons = paired_comparisons(group)
    significant = set()
    if len(comparisons):
        chosen = comparisons[(comparisons["kind"] == "diffraction") & comparisons["excludes_zero"].astype(bool)]
        significant = {tuple(first.split("/")) for first in chosen["first"]}
    summary["significant"] = [(m, a, d) in significant for m, a, d in zip(summary["model"], summary["ablation"], summary["diffraction"])]
    higher_is_better = metric in ("accuracy", "roc_auc")
    best = summary["mean"].idxmax() if higher_is_better else summary["mean"].idxmin()
    summary["best"] = summary.index == best
    architectures = group.drop_duplicates("model").set_index("model")["architecture"] if "architecture" in group else pd.Series(dtype=str)
    values = {s["ours"]: s["value"] for s in (published or []) if s.get("task") == task and "ours" in s
              and s.get("metric", "mae") == metric and s.get("unit", "") == unit}  # fmt: skip
    summary["published"] = [values.get(architectures.get(m, m), np.nan) if a == "default" else np.nan
                            for m, a in zip(summary["model"], summary["ablation"])]  # fmt: skip
    name = METRIC_NAMES.get(metric, metric) + (" %" if scale != 1 else "") + (f" ({unit})" if unit and metric == "mae" else "")
    return bar_chart_png(summary, f"{dataset} / {task}: test {name}, mean ± std over each bar's n jobs", f"test {name}")


def error_cost_chart(runs: pd.DataFrame, dataset: str, task: str) -> bytes | None:
    """Test error (mean with its 95% t-interval over jobs) against device-hours per job, per model
    variant (:func:`prdnet.plots.error_cost_png`); None when the jobs measured no cost."""
    group = runs[runs["task"] == task]
    if "device_hours" not in group or group["device_hours"].isna().all():
        return None
    metric, unit = group["metric"].iloc[0], group["unit"].iloc[0]
    scale = _scale(metric)
    points = []
    for (model, ablation, diffraction), jobs in group.groupby(["model", "ablation", "diffraction"], sort=True):
        values = jobs["value"].to_numpy(float) * scale
        hours = jobs["device_hours"].astype(float)
        if hours.isna().all() or model == "dummy":
            continue
        half = (stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        points.append({"label": variant_label(model, ablation), "diffraction": diffraction, "hours": float(hours.mean()),
                       "mean": values.mean(), "low": values.mean() - half, "high": values.mean() + half})  # fmt: skip
    if not points:
        return None
    name = METRIC_NAMES.get(metric, metric) + (" %" if scale != 1 else "") + (f" ({unit})" if unit and metric == "mae" else "")
    return error_cost_png(pd.DataFrame(points), f"{dataset} / {task}: test {name} against cost (mean, 95% CI)", f"test {name}")


def job_figures(run_dir: Path) -> list[str]:
    """The parity plot (or class-probability histogram) and the learning curve of one job."""
    return [figure_tag(png, caption, kind) for kind, caption, png in job_plots(run_dir)]


def rejects_section(dataset_dir: Path) -> str:
    """Counts read, accepted and rejected (by reason), and per-task missing targets."""
    parts = []
    summary_path = dataset_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        counts = {k: summary.get(k) for k in ("read", "accepted", "rejected")}
        rows = [("crystals read", counts["read"]), ("accepted", counts["accepted"]), ("rejected", counts["rejected"])]
        subset = summary.get("subset") or {}
        if subset.get("size") is not None:
            rows.append((f"used: a seeded subset (seed {subset.get('seed')}) of the accepted", subset.get("kept")))
        rows += [(f"rejected: {reason}", n) for reason, n in sorted(summary.get("rejected_by_reason", {}).items())]
        rows += [(f"no target for {task}", n) for task, n in sorted(summary.get("task_rejects", {}).items())]
        body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        parts.append(f"<table><thead><tr><th>validation</th><th>count</th></tr></thead><tbody>{body}</tbody></table>")
    rejects_path = dataset_dir / "rejects.csv"
    if rejects_path.exists():
        rejects = pd.read_csv(rejects_path)
        if len(rejects):
            examples = rejects.head(10).to_html(index=False, border=0, escape=True)
            parts.append(f"<details><summary>first {min(10, len(rejects))} of {len(rejects)} rejects "
                         f"({html.escape(rejects_path.name)})</summary>{examples}</details>")  # fmt: skip
    return "\n".join(parts) or "<p>no validation summary found</p>"


def leakage_section(dataset_dir: Path) -> str:
    """Split sizes and, per part, the crystals sharing a duplicate, a formula or a prototype with
    training (:func:`prdnet.report.split_audit`)."""
    audit = split_audit(dataset_dir / "splits")
    if not audit:
        return "<p>no split summary found</p>"
    rows = []
    for row in audit:
        cells = [row["task"], row["fold"], row["train"], row["val"], row["test"]]
        cells += [f"{c['duplicate']} / {c['polymorph']} / {c['prototype']}" for c in row["shared"].values()]
        cells.append(shortened(row["cluster"], 120))
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = ("<tr><th>task</th><th>fold</th><th>train</th><th>val</th><th>test</th><th>val sharing with train: duplicate / "
              "polymorph / prototype</th><th>test sharing with train: duplicate / polymorph / prototype</th>"
              "<th>held out</th></tr>")  # fmt: skip
    return (f"<p>leakage action: <code>{html.escape(audit[0]['action'])}</code> (splits/leakage.json; pairs in "
            f"splits/leakage_pairs.csv)</p><table><thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>")


def generalization_section(results_dir: Path) -> str:
    """The in-distribution vs out-of-distribution table and one plot per OOD dataset and task, when the run has them."""
    table_path = results_dir / "tables" / "generalization.md"
    csv_path = results_dir / "tables" / "generalization.csv"
    if not table_path.exists() or not csv_path.exists() or csv_path.stat().st_size < 2:
        return ""
    parts = ['<section id="generalization"><h2>In distribution vs out of distribution</h2>',
             markdown_to_html(table_path.read_text().split("\n", 1)[1])]
    try:
        table = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    for (dataset, task), group in table.groupby(["dataset", "task"], sort=True):
        group = group.assign(label=[variant_label(m, a) for m, a in zip(group["model"], group["ablation"])])
        png = generalization_png(group, f"{dataset} / {task}: test MAE OOD / random ({group['random_dataset'].iloc[0]})")
        parts.append(figure_tag(png, f"{dataset} / {task}: OOD / random error ratio with its 95% interval", "generalization"))
    return "\n".join(parts) + "</section>"


def provenance_section(runs: pd.DataFrame, run_dirs: list[Path], results_dir: Path, config: dict[str, Any], commit: str) -> str:
    commits = sorted({json.loads((d / "run.json").read_text())["tags"].get("git_commit", "unknown") for d in run_dirs})
    versions = {}
    for dataset in sorted(set(runs["dataset"])):
        summary_path = results_dir / dataset / "summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            versions[dataset] = {"source": summary.get("source"), "source_version": summary.get("source_version")}
    items = [
        f"<li>report written {html.escape(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))} "
        f"by code at git commit <code>{html.escape(commit)}</code></li>",
        f"<li>jobs trained at git commit(s): {', '.join(f'<code>{html.escape(c)}</code>' for c in commits)}</li>",
        f"<li>{len(run_dirs)} training jobs; seeds {', '.join(map(str, sorted(set(runs['seed']))))}</li>",
    ]  # fmt: skip
    return (f"<ul>{''.join(items)}</ul><h3>Data versions</h3><pre>{html.escape(yaml.safe_dump(versions, sort_keys=True))}</pre>"
            f"<h3>Configuration</h3><pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>")  # fmt: skip


def build_report(run_dirs: list[Path], results_dir: Path, config: dict[str, Any], commit: str, title: str = "PRDNet-bench report") -> str:
    """The report's HTML text."""
    runs = collect_runs(run_dirs)
    runs["run_dir"] = [str(d) for d in run_dirs]
    body = [f"<h1>{html.escape(title)}</h1>"]
    datasets = sorted(set(runs["dataset"]))
    generalization = generalization_section(results_dir)
    body.append("<p>Contents: " + ", ".join(f'<a href="#{d}">{html.escape(d)}</a>' for d in datasets)
                + (', <a href="#generalization">in distribution vs out of distribution</a>' if generalization else "")
                + ', <a href="#audit">invariance audit</a>, <a href="#provenance">provenance</a>.</p>')  # fmt: skip
    for dataset in datasets:
        data = runs[runs["dataset"] == dataset]
        published = load_published(config.get("published_scores"), dataset)
        body.append(f'<section id="{html.escape(dataset)}"><h2>{html.escape(dataset)}</h2>')
        body.append("<h3>Validation and rejects</h3>" + rejects_section(results_dir / dataset))
        body.append("<h3>Splits and leakage</h3>" + leakage_section(results_dir / dataset))
        table_path = results_dir / "tables" / f"{dataset}.md"
        body.append("<h3>Tables</h3>")
        body.append(markdown_to_html(table_path.read_text()) if table_path.exists() else "<p>no table found</p>")
        for task in dict.fromkeys(data["task"]):
            body.append(f"<h3>{html.escape(task)}</h3>")
            chart = task_bar_chart(data, dataset, task, published)
            body.append(figure_tag(chart, f"{dataset} / {task}: test metric by model and diffraction mode", "bar-chart"))
            cost_chart = error_cost_chart(data, dataset, task)
            if cost_chart is not None:
                body.append(figure_tag(cost_chart, f"{dataset} / {task}: test error against device-hours per job", "error-cost"))
            jobs = data[data["task"] == task].sort_values(["model", "ablation", "diffraction", "fold", "seed"])
            body.append("<h4>Per job: parity plot and learning curve</h4><div>")
            for row in jobs.itertuples():
                body.extend(job_figures(Path(row.run_dir)))
            body.append("</div>")
        body.append("</section>")
    body.append(generalization)
    audit_path = results_dir / "audit.md"
    body.append('<section id="audit"><h2>Invariance audit</h2>')
    body.append(markdown_to_html(audit_path.read_text()) if audit_path.exists() else
                f"<p>not run (the workflow writes it when a dataset reads the embedded MP file; by hand: "
                f"<code>.venv/bin/python -m prdnet.audit &gt; {html.escape(str(audit_path))}</code>)</p>")  # fmt: skip
    body.append("</section>")
    body.append('<section id="provenance"><h2>Provenance</h2>')
    body.append(provenance_section(runs, run_dirs, results_dir, config, commit) + "</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def write_report(run_dirs: list[Path], results_dir: Path, config: dict[str, Any], commit: str, out: Path) -> None:
    """Write the report atomically."""
    write_text(out, build_report(run_dirs, results_dir, config, commit))
