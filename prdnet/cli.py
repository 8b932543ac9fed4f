"""The ``prdnet`` command: each workflow step, runnable without Snakemake.

Options that come from the workflow configuration are passed as JSON blocks (the rule's
params), so a change of configuration re-runs exactly the steps it affects.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq

from prdnet.data.leakage import LEAKAGE_ACTIONS


def _json(text: str) -> dict:
    return json.loads(text)


def prepare(args: argparse.Namespace) -> None:
    from prdnet.data.prepare import prepare_dataset
    from prdnet.data.validate import ValidationRules

    from prdnet.data.prepare import EmptyDatasetError
    from prdnet.data.sources.files import DataFileError

    try:
        summary = prepare_dataset(args.dataset, args.options, ValidationRules(**args.validation), args.out_dir)
    except (DataFileError, EmptyDatasetError) as error:
        sys.exit(f"prdnet prepare: {error}")
    print(
        f"{args.dataset}: read {summary['read']}, accepted {summary['accepted']}, "
        f"rejected {summary['rejected']} {summary['rejected_by_reason']}, "
        f"kept {summary['subset']['kept']}; per-task rejects {summary['task_rejects']}; "
        f"usable per task {summary['task_counts']}"
    )


def download(args: argparse.Namespace) -> None:
    """Fetch a networked source into its cache under resources/ (run where the network is)."""
    options = args.options
    source = options["source"]
    if source == "mp_live":
        from prdnet.data.sources import mp_live

        meta = mp_live.download(options)
    elif source in ("mp_2018", "jarvis_dft_3d_2021"):
        from prdnet.data.sources import jarvis

        meta = jarvis.download(source, options)
    elif source == "matbench":
        from prdnet.data.sources import matbench

        meta = {"file": str(matbench.download(options["matbench_task"], options["matminer_data"]))}
    else:
        raise SystemExit(f"source {source!r} has nothing to download")
    print(f"{args.dataset}: downloaded {json.dumps(meta, sort_keys=True)}")


def require_intact_structures(path: str, step: str) -> None:
    """Stop the step with the checksum error's message (file and fix) if ``structures.parquet``
    is not the file prepare wrote (:func:`prdnet.data.checksums.verify_structures`)."""
    from prdnet.data.checksums import DataChecksumError, verify_structures

    try:
        verify_structures(path)
    except DataChecksumError as error:
        sys.exit(f"prdnet {step}: {error}")


def split(args: argparse.Namespace) -> None:
    from prdnet.data.split_step import split_dataset

    require_intact_structures(args.structures, "split")
    official = json.loads(Path(args.official_folds).read_text())
    result = split_dataset(args.structures, official, args.groups, args.split, args.leakage, args.out_dir)
    for task, folds in result["summary"].items():
        for fold, counts in folds.items():
            unusable = len(counts["unusable_test_ids"])
            audit = result["leakage"][task][fold]["test"]
            print(f"{task} {fold}: train {counts['train']}, val {counts['val']}, test {counts['test']}"
                  + (f" (held out: {counts['cluster']})" if "cluster" in counts else "")
                  + (f", {unusable} official test ids unusable (see rejects.csv)" if unusable else "")
                  + f"; test crystals sharing with train: {audit['duplicate']} duplicates, {audit['polymorph']} polymorphs, "
                  f"{audit['prototype']} prototypes (leakage.json)")


def groups(args: argparse.Namespace) -> None:
    import time

    from prdnet.data.crystal_groups import MatcherTolerances, crystal_groups
    from prdnet.data.tables import read_crystals
    from prdnet.io import write_parquet

    require_intact_structures(args.structures, "groups")
    started = time.perf_counter()
    crystals = read_crystals(pq.read_table(args.structures))
    table = crystal_groups(crystals, MatcherTolerances.from_config(args.matcher), args.workers)
    write_parquet(args.out, table)
    clusters = len(set(table["duplicate_cluster"].to_pylist()))
    print(f"{len(crystals.ids)} crystals: {clusters} duplicate clusters, {len(set(table['reduced_formula'].to_pylist()))} "
          f"formulas, {len(set(table['prototype'].to_pylist()))} prototypes; {args.workers} workers, "
          f"{time.perf_counter() - started:.1f} s")


def featurize(args: argparse.Namespace) -> None:
    from prdnet.data.graphs import GraphParams
    from prdnet.data.shards import featurize_dataset

    require_intact_structures(args.structures, "featurize")
    options = dict(args.featurizer)
    n_shards = options.pop("n_shards")
    manifest = featurize_dataset(args.structures, args.out_dir, GraphParams(**options), n_shards, args.workers)
    print(f"featurized {manifest['crystals']} crystals into {n_shards} shards ({manifest['graph_rejects']} graph rejects)")


def train(args: argparse.Namespace) -> None:
    from prdnet.data.checksums import DataChecksumError, verify_split_lists, verify_structures
    from prdnet.guards import SanityThresholds
    from prdnet.live_tracking import LiveTracking
    from prdnet.training import TrainingJob, resolve_training, run_job

    try:  # once per job, before the job reads them
        verify_split_lists(args.split_dir)
        if args.structures:
            verify_structures(args.structures)
    except DataChecksumError as error:
        sys.exit(f"prdnet train: {error}")
    summary = json.loads(Path(args.dataset_summary).read_text())
    task_info = summary["tasks"][args.task]
    labels = {**args.labels, "task": args.task, "git_commit": git_commit()}
    job = TrainingJob(
        shard_paths=[Path(p) for p in args.shards],
        split_dir=Path(args.split_dir),
        task=args.task,
        task_kind=task_info["kind"],
        unit=task_info["unit"],
        model_spec=args.model_spec,
        training=resolve_training(args.model_spec, args.training),
        out_dir=Path(args.out_dir),
        labels=labels,
        atom_features=Path(args.atom_features) if args.atom_features else None,
        sanity=SanityThresholds(**args.sanity),
        structures=Path(args.structures) if args.structures else None,
        live_tracking=LiveTracking(**args.live_tracking) if args.live_tracking else None,
    )
    try:
        metrics = run_job(job)
    except FloatingPointError as error:  # a diverged job: one clear line, no outputs
        sys.exit(f"prdnet train: {error}")
    print(json.dumps(metrics, indent=2))


def git_commit() -> str:
    """The commit of the code that ran (``unknown`` outside a git checkout)."""
    import subprocess

    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def aggregate(args: argparse.Namespace) -> None:
    from prdnet.report import write_tables

    run_dirs = [Path(p).parent for p in args.metrics]
    table = write_tables(args.dataset, run_dirs, args.published, Path(args.out_prefix),
                         Path(args.splits_summary).parent if args.splits_summary else None)
    print(table.to_string(index=False))


def generalization(args: argparse.Namespace) -> None:
    from prdnet.generalization import write_generalization

    table = write_generalization([Path(p).parent for p in args.metrics], args.compare_with, Path(args.out_prefix))
    print(table.drop(columns=[c for c in table.columns if c.endswith(("_low", "_high"))]).to_string(index=False))


def matbench_record(args: argparse.Namespace) -> None:
    from prdnet.report import write_matbench_results

    folds = {json.loads((Path(p).parent / "run.json").read_text())["tags"]["fold"]: Path(p) for p in args.predictions}
    scores = write_matbench_results(args.matbench_task, args.matminer_data, folds, Path(args.out), args.metadata)
    print(json.dumps(scores, indent=2, default=str))


def mlflow_import(args: argparse.Namespace) -> None:
    from prdnet.io import write_json
    from prdnet.tracking import default_tracking_uri, import_runs

    from prdnet.tracking import TrackingServerError, check_server, redact_process_output, redact_uri

    results = Path(args.results_dir)
    if args.tracking_uri_from_env:
        # read here, at import time, never passed on the command line (it may carry credentials)
        uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        if not uri:
            sys.exit("prdnet mlflow-import: mlflow.use_env_tracking_uri is true but MLFLOW_TRACKING_URI is not set "
                     "(e.g. export MLFLOW_TRACKING_URI=http://host:5000)")  # fmt: skip
    else:
        uri = args.tracking_uri or default_tracking_uri(results)
    redact_process_output(uri)  # MLflow prints run URLs, credentials included
    if uri.startswith("sqlite:"):  # SQLite's own message would be "unable to open database file"
        database = Path(uri.removeprefix("sqlite:///"))
        if not database.parent.is_dir() or not os.access(database.parent, os.W_OK):
            sys.exit(f"prdnet mlflow-import: cannot write the MLflow database {database}: its folder {database.parent} "
                     "is missing or not writable for this user; make it writable (or set mlflow.tracking_uri) and "
                     "run again: the finished jobs' results are kept")  # fmt: skip
    try:
        check_server(uri)
    except TrackingServerError as error:
        sys.exit(f"prdnet mlflow-import: {error}. Nothing was lost: the finished jobs' results stay under "
                 f"{results}/ and are imported when the workflow runs again with the server up.")  # fmt: skip
    ledger = import_runs([Path(p).parent for p in args.metrics], results, uri, args.experiment)
    write_json(args.out, ledger)
    print(f"MLflow {redact_uri(uri)}: imported {ledger['imported']}, replaced {ledger['replaced']}, "
          f"already there {ledger['skipped']}")  # fmt: skip


def report(args: argparse.Namespace) -> None:
    from prdnet.html_report import write_report

    run_dirs = [Path(p).parent for p in args.metrics]
    write_report(run_dirs, Path(args.results_dir), args.config, git_commit(), Path(args.out))
    print(f"wrote {args.out} ({len(run_dirs)} jobs)")


def predict(args: argparse.Namespace) -> None:
    from prdnet.predict import PredictError, predict_to_csv

    options = {key: value for key, value in [("id_column", args.id_column), ("structure_column", args.structure_column),
               ("structure_format", args.structure_format), ("format", args.format), ("id_key", args.id_key)] if value}  # fmt: skip
    try:
        rows = predict_to_csv(args.job, args.structures, args.out, options, args.device, args.batch_size)
    except (PredictError, ValueError) as error:
        sys.exit(f"prdnet predict: {error}")
    rejected = sum(bool(row["reason"]) for row in rows)
    print(f"{args.out}: {len(rows) - rejected} crystals predicted by {len(args.job)} job(s), {rejected} rejected (reason column)")


def check_config(args: argparse.Namespace) -> None:
    from prdnet.config import ConfigError, check_startup, load_config

    try:
        config = load_config(args.config)
        check_startup(config, jobs_run_here=not args.jobs_run_elsewhere)
    except (ConfigError, OSError) as error:
        lines = str(error).removeprefix("invalid configuration:\n").splitlines()
        sys.exit("\n".join(f"{args.config}: {line.strip()}" for line in lines if line.strip()))
    print(f"{args.config}: valid; every configured file is there")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prdnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("prepare", help="read a source, validate, write structures.parquet and rejects.csv")
    command.add_argument("--dataset", required=True)
    command.add_argument("--options", type=_json, required=True, help="the dataset's config block (JSON)")
    command.add_argument("--validation", type=_json, required=True, help="the validation config block (JSON)")
    command.add_argument("--out-dir", required=True)
    command.set_defaults(run=prepare)

    command = commands.add_parser("download", help="fetch a networked source (mp_live, mp_2018, jarvis, matbench) into resources/")
    command.add_argument("--dataset", required=True)
    command.add_argument("--options", type=_json, required=True, help="the dataset's config block (JSON, with its cache path)")
    command.set_defaults(run=download)

    command = commands.add_parser("groups", help="formula, chemical system, symmetry, prototype and duplicate cluster of each crystal")
    command.add_argument("--structures", required=True)
    command.add_argument("--matcher", type=_json, default={}, help="StructureMatcher/spglib tolerances (JSON: ltol, stol, angle_tol, symprec)")
    command.add_argument("--workers", type=int, default=1)
    command.add_argument("--out", required=True)
    command.set_defaults(run=groups)

    command = commands.add_parser("generalization", help="in distribution vs out of distribution: OOD / random error ratios")
    command.add_argument("--metrics", nargs="+", required=True, help="metrics.json of every job of the OOD datasets and their references")
    command.add_argument("--compare-with", type=_json, required=True, help="OOD dataset → random-split dataset (JSON)")
    command.add_argument("--out-prefix", required=True)
    command.set_defaults(run=generalization)

    command = commands.add_parser("split", help="write train/val/test id lists and their leakage audit")
    command.add_argument("--structures", required=True)
    command.add_argument("--official-folds", required=True)
    command.add_argument("--split", type=_json, required=True, help="the dataset's split block (JSON)")
    command.add_argument("--groups", required=True, help="the dataset's crystal_groups.parquet")
    command.add_argument("--leakage", choices=LEAKAGE_ACTIONS, default="report",
                         help="what to do with val/test crystals that duplicate training ones")
    command.add_argument("--out-dir", required=True)
    command.set_defaults(run=split)

    command = commands.add_parser("featurize", help="build periodic k-NN graphs into Parquet shards")
    command.add_argument("--structures", required=True)
    command.add_argument("--featurizer", type=_json, required=True, help="graph parameters and n_shards (JSON)")
    command.add_argument("--workers", type=int, default=1, help="processes")
    command.add_argument("--out-dir", required=True)
    command.set_defaults(run=featurize)

    command = commands.add_parser("train", help="train and test one model on one task and fold")
    command.add_argument("--shards", nargs="+", required=True)
    command.add_argument("--split-dir", required=True, help="folder with train.txt, val.txt, test.txt")
    command.add_argument("--dataset-summary", required=True, help="the dataset's summary.json (task kinds, units)")
    command.add_argument("--task", required=True)
    command.add_argument("--model-spec", type=_json, required=True, help="model spec (JSON, model.schema.yaml)")
    command.add_argument("--training", type=_json, default={},
                         help="overrides of the model preset's training recipe, key by key (JSON)")
    command.add_argument("--sanity", type=_json, default={}, help="thresholds of the sanity guards (JSON)")
    command.add_argument("--atom-features", default=None,
                         help="CGCNN's element table (atom_init.json) for presets with atom_input: cgcnn")
    command.add_argument("--labels", type=_json, default={}, help="dataset, fold, model, diffraction, ablation (JSON)")
    command.add_argument("--structures", default=None,
                         help="the dataset's structures.parquet: its structures enter the job's data digest")
    command.add_argument("--live-tracking", type=_json, default=None,
                         help='log every epoch to an MLflow tracking server (JSON: experiment, results_dir, tracking_uri; '
                              'tracking_uri null = MLFLOW_TRACKING_URI)')  # fmt: skip
    command.add_argument("--out-dir", required=True)
    command.set_defaults(run=train)

    command = commands.add_parser("aggregate", help="tables of one dataset from finished jobs")
    command.add_argument("--dataset", required=True)
    command.add_argument("--metrics", nargs="+", required=True, help="the jobs' metrics.json files")
    command.add_argument("--published", default=None, help="published scores YAML")
    command.add_argument("--out-prefix", required=True, help="writes PREFIX.md, PREFIX.csv, PREFIX_runs.csv")
    command.add_argument("--splits-summary", default=None, help="the dataset's splits/summary.json (leakage.json beside it): sizes and leakage in the notes")
    command.set_defaults(run=aggregate)

    command = commands.add_parser("matbench-record", help="MatBench leaderboard file of one model variant")
    command.add_argument("--matbench-task", required=True)
    command.add_argument("--matminer-data", default=None)
    command.add_argument("--predictions", nargs="+", required=True, help="predictions.parquet of every fold")
    command.add_argument("--metadata", type=_json, default={})
    command.add_argument("--out", required=True)
    command.set_defaults(run=matbench_record)

    command = commands.add_parser("mlflow-import", help="import finished jobs into MLflow (single writer)")
    command.add_argument("--metrics", nargs="+", required=True, help="the jobs' metrics.json files")
    command.add_argument("--results-dir", required=True)
    command.add_argument("--experiment", required=True)
    where = command.add_mutually_exclusive_group()
    where.add_argument("--tracking-uri", default=None, help="default: SQLite <results-dir>/mlflow.db")
    where.add_argument("--tracking-uri-from-env", action="store_true",
                       help="use the environment variable MLFLOW_TRACKING_URI (e.g. an http:// server)")  # fmt: skip
    command.add_argument("--out", required=True, help="ledger JSON of imported runs")
    command.set_defaults(run=mlflow_import)

    command = commands.add_parser("report", help="one self-contained HTML report: tables, plots, rejects, provenance")
    command.add_argument("--metrics", nargs="+", required=True, help="the jobs' metrics.json files")
    command.add_argument("--results-dir", required=True, help="holds tables/, <dataset>/summary.json, audit.md")
    command.add_argument("--config", type=_json, default={}, help="the run's configuration (JSON), shown as provenance")
    command.add_argument("--out", required=True, help="the HTML file")
    command.set_defaults(run=report)
    command = commands.add_parser("predict", help="apply finished jobs (several: ensemble mean and spread) to new crystals")
    command.add_argument("--job", nargs="+", required=True, help="finished job folder(s), e.g. results/<dataset>/runs/<task>/fold*/<model>/<diffraction>/<ablation>")
    command.add_argument("--structures", required=True, help="a folder of structure files, an extxyz file / ASE database, or a table")
    command.add_argument("--out", required=True, help="CSV: id, predicted [, predicted_std, n_models], reason")
    command.add_argument("--id-column", default=None, help="table: id column (default id)")
    command.add_argument("--structure-column", default=None, help="table: structure column (default structure)")
    command.add_argument("--structure-format", default=None, choices=["auto", "cif", "poscar", "path", "pymatgen"])
    command.add_argument("--format", default=None, help="table or ASE file format (default: from the name)")
    command.add_argument("--id-key", default=None, help="extxyz / ASE database: the key holding each frame's id")
    command.add_argument("--device", default="cpu")
    command.add_argument("--batch-size", type=int, default=None, help="default: the job's training batch size")
    command.set_defaults(run=predict)

    command = commands.add_parser("check-config", help="validate a configuration file: the workflow's start-up checks")
    command.add_argument("config")
    command.add_argument("--jobs-run-elsewhere", action="store_true",
                         help="the jobs run on other nodes (a cluster profile): do not ask for CUDA on this machine")
    command.set_defaults(run=check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
