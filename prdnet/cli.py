"""The ``prdnet`` command: each workflow step, runnable without Snakemake.

Options that come from the workflow configuration are passed as JSON blocks (the rule's
params), so a change of configuration re-runs exactly the steps it affects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq


def _json(text: str) -> dict:
    return json.loads(text)


def prepare(args: argparse.Namespace) -> None:
    from prdnet.data.prepare import prepare_dataset
    from prdnet.data.validate import ValidationRules

    summary = prepare_dataset(args.dataset, args.options, ValidationRules(**args.validation), args.out_dir)
    print(
        f"{args.dataset}: read {summary['read']}, accepted {summary['accepted']}, "
        f"rejected {summary['rejected']} {summary['rejected_by_reason']}, "
        f"kept {summary['subset']['kept']}; per-task rejects {summary['task_rejects']}; "
        f"usable per task {summary['task_counts']}"
    )


def split(args: argparse.Namespace) -> None:
    from prdnet.data.splits import make_splits, write_splits
    from prdnet.data.tables import read_crystals
    from prdnet.io import write_json

    crystals = read_crystals(pq.read_table(args.structures))
    official = json.loads(Path(args.official_folds).read_text())
    splits, summary = make_splits(crystals.ids, crystals.targets, args.split, official)
    write_splits(splits, args.out_dir)
    write_json(Path(args.out_dir) / "summary.json", summary)
    for task, folds in summary.items():
        for fold, counts in folds.items():
            unusable = len(counts["unusable_test_ids"])
            print(f"{task} {fold}: train {counts['train']}, val {counts['val']}, test {counts['test']}"
                  + (f", {unusable} official test ids unusable (see rejects.csv)" if unusable else ""))


def featurize(args: argparse.Namespace) -> None:
    from prdnet.data.graphs import GraphParams
    from prdnet.data.shards import featurize_dataset

    options = dict(args.featurizer)
    n_shards = options.pop("n_shards")
    manifest = featurize_dataset(args.structures, args.out_dir, GraphParams(**options), n_shards, args.workers)
    print(f"featurized {manifest['crystals']} crystals into {n_shards} shards ({manifest['graph_rejects']} graph rejects)")


def check_config(args: argparse.Namespace) -> None:
    from prdnet.config import load_config

    load_config(args.config)
    print(f"{args.config}: valid")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prdnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("prepare", help="read a source, validate, write structures.parquet and rejects.csv")
    command.add_argument("--dataset", required=True)
    command.add_argument("--options", type=_json, required=True, help="the dataset's config block (JSON)")
    command.add_argument("--validation", type=_json, required=True, help="the validation config block (JSON)")
    command.add_argument("--out-dir", required=True)
    command.set_defaults(run=prepare)

    command = commands.add_parser("split", help="write train/val/test id lists")
    command.add_argument("--structures", required=True)
    command.add_argument("--official-folds", required=True)
    command.add_argument("--split", type=_json, required=True, help="the dataset's split block (JSON)")
    command.add_argument("--out-dir", required=True)
    command.set_defaults(run=split)

    command = commands.add_parser("featurize", help="build periodic k-NN graphs into Parquet shards")
    command.add_argument("--structures", required=True)
    command.add_argument("--featurizer", type=_json, required=True, help="graph parameters and n_shards (JSON)")
    command.add_argument("--workers", type=int, default=1, help="processes")
    command.add_argument("--out-dir", required=True)
    command.set_defaults(run=featurize)

    command = commands.add_parser("check-config", help="validate a configuration file")
    command.add_argument("config")
    command.set_defaults(run=check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
