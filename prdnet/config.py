"""Load and validate the workflow configuration against ``workflow/schemas/config.schema.yaml``.

Errors name the offending key by its path (``datasets.mp.split.seed``) and the fix, so a typo is
found at start-up, not hours into a run: :func:`validate_config` checks the keys and types, that
every task, fold, model and preset exists and that every experiment plans a job;
:func:`check_files` that every configured file is there; :func:`check_device` that
``device: cuda`` has GPUs. The workflow (common.smk) runs all three before any job.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "workflow" / "schemas"
SCHEMA_PATH = SCHEMA_DIR / "config.schema.yaml"
MODEL_SCHEMA_PATH = SCHEMA_DIR / "model.schema.yaml"
PRESETS_PATH = SCHEMA_DIR.parents[1] / "config" / "models.yaml"
MATMINER_DOWNLOADS = "resources/matminer"
"""The folder the download rule fills with MatBench data (workflow/rules/download.smk)."""


class ConfigError(ValueError):
    """The configuration does not match the schema."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "not" and error.validator_value == {"required": ["seed", "seeds"]}:
        return (f"config key '{key}': sets both `seed` and `seeds`: keep `seed` (one job) or `seeds` (one job per "
                "seed, the `seed` wildcard), not both")
    if key == "mlflow.tracking_uri" and error.validator == "type":
        return (f"config key '{key}': must be null when mlflow.use_env_tracking_uri is true (the URI then comes from "
                "the environment variable MLFLOW_TRACKING_URI): remove one of the two")
    if error.validator == "oneOf" and error.validator_value == [{"required": ["holdout"]}, {"required": ["folds", "test_fraction"]}]:
        return (f"config key '{key}': leave_cluster_out needs either `holdout` (the clusters to hold out, one fold each) "
                "or `folds` with `test_fraction` (disjoint sets of whole clusters drawn with `seed`), not both")
    if error.validator == "oneOf" and error.context and all(
        any(e.validator == "const" for e in group) for group in _by_alternative(error).values()
    ):
        kinds = [sub.get("properties", {}).get("kind", {}).get("const") for sub in _resolved_alternatives(error)]
        if all(kinds) and isinstance(error.instance, dict):
            return (f"config key '{key}.kind': unknown split kind {error.instance.get('kind')!r}; the kinds are "
                    f"{', '.join(kinds)} (README, Splits)")
    if error.validator == "oneOf" and error.context:
        # report the alternative whose discriminating constant ("kind") matched
        matching = [errs for errs in _by_alternative(error).values() if not any(e.validator == "const" for e in errs)]
        if matching:
            return "; ".join(_describe(e) for e in matching[0])
    return f"config key '{_key_path(error)}': {error.message}"


def _by_alternative(error: jsonschema.ValidationError) -> dict[int, list[jsonschema.ValidationError]]:
    """A ``oneOf`` error's sub-errors grouped by the alternative they belong to."""
    groups: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        groups.setdefault(sub.relative_schema_path[0], []).append(sub)
    return groups


def _resolved_alternatives(error: jsonschema.ValidationError) -> list[dict[str, Any]]:
    """The subschemas of a ``oneOf`` error, ``$ref``s to this schema's ``$defs`` resolved."""
    defs = load_schema().get("$defs", {})
    resolved = []
    for alternative in error.validator_value:
        ref = alternative.get("$ref", "")
        resolved.append(defs.get(ref.removeprefix("#/$defs/"), {}) if ref.startswith("#/$defs/") else alternative)
    return resolved


def workflow_names() -> dict[str, list[str]]:
    """The names the workflow's wildcards take, from the model registry (the one list):
    ``model`` (backbones), ``diffraction`` (``none`` + modes), ``ablation`` (``default`` + ablations)."""
    from prdnet.models.registry import ABLATIONS, BACKBONES, DIFFRACTION_MODES

    return {
        "model": list(BACKBONES),
        "diffraction": ["none", *DIFFRACTION_MODES],
        "ablation": ["default", *ABLATIONS],
    }


def load_model_schema() -> dict[str, Any]:
    """The model spec schema, its name lists filled from the model registry."""
    from prdnet.models.registry import ABLATIONS, BACKBONES, DIFFRACTION_MODES

    schema = yaml.safe_load(MODEL_SCHEMA_PATH.read_text(encoding="utf-8"))
    from prdnet.models.registry import available_models

    schema["properties"]["name"]["enum"] = available_models()
    schema["$defs"]["diffraction_mode"]["enum"] = list(DIFFRACTION_MODES)
    schema["$defs"]["ablation"]["enum"] = list(ABLATIONS)
    schema["$defs"]["presets_file"]["properties"]["models"]["propertyNames"]["enum"] = list(BACKBONES)  # built in
    return schema


def load_schema() -> dict[str, Any]:
    """The configuration schema, its name lists filled from the registries: sources
    (:func:`prdnet.data.sources.available_sources`: built-in and installed through entry points),
    diffraction modes and ablations (:func:`workflow_names`)."""
    from prdnet.data.sources import available_sources

    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    schema["$defs"]["dataset"]["properties"]["source"]["enum"] = available_sources()
    experiment = schema["properties"]["experiments"]["items"]["properties"]
    names = workflow_names()
    experiment["diffraction"]["items"]["enum"] = names["diffraction"]
    experiment["ablations"]["items"]["enum"] = names["ablation"]
    return schema


def _schema_registry() -> Registry:
    """Resolves ``$ref: model.schema.yaml`` to the model spec schema."""
    return Registry().with_resource("model.schema.yaml", Resource.from_contents(load_model_schema(), DRAFT202012))


def dataset_folds(dataset: dict[str, Any]) -> list[str]:
    """A dataset's folds, from its config alone: MatBench's five official ones, the user's
    ``n_folds`` (fold column) or id-list files, a ``leave_cluster_out`` split's held-out clusters
    or ``folds``, else the single ``fold0``."""
    split = dataset["split"]
    count = {"matbench": 5, "fold_column": split.get("n_folds"), "id_lists": len(split.get("test", [])),
             "leave_cluster_out": len(split["holdout"]) if "holdout" in split else split.get("folds")}.get(split["kind"], 1)  # fmt: skip
    return [f"fold{i}" for i in range(count)]


def experiment_jobs(config: dict[str, Any], experiment: dict[str, Any]) -> int:
    """How many training jobs an experiment plans (before removing those shared with others)."""
    variants = len(experiment["models"]) * len(experiment["diffraction"]) * len(experiment["ablations"])
    count = 0
    for name in experiment["datasets"]:
        dataset = config["datasets"][name]
        tasks = [t for t in dataset["tasks"] if t in experiment.get("tasks", dataset["tasks"])]
        folds = [f for f in dataset_folds(dataset) if f in experiment.get("folds", [f])]
        count += len(tasks) * len(folds) * variants
    return count


def _check_references(config: dict[str, Any]) -> None:
    """Names used by experiments must exist: datasets, their tasks and folds, models; and each
    experiment must plan at least one job."""
    for index, experiment in enumerate(config["experiments"]):
        where = f"config key 'experiments.{index}"
        for dataset in experiment["datasets"]:
            if dataset not in config["datasets"]:
                raise ConfigError(f"{where}.datasets': unknown dataset {dataset!r}; defined: {sorted(config['datasets'])}")
        datasets = {name: config["datasets"][name] for name in experiment["datasets"]}
        their_tasks = sorted({t for dataset in datasets.values() for t in dataset["tasks"]})
        unknown_tasks = [t for t in experiment.get("tasks", []) if t not in their_tasks]
        if unknown_tasks:
            raise ConfigError(f"{where}.tasks': {unknown_tasks} are tasks of none of its datasets {sorted(datasets)} "
                              f"(their tasks: {their_tasks}); fix the name or remove it")  # fmt: skip
        for name, dataset in datasets.items():
            missing = [f for f in experiment.get("folds", []) if f not in dataset_folds(dataset)]
            if missing:
                raise ConfigError(f"{where}.folds': dataset {name} has no fold {missing}; its folds: {dataset_folds(dataset)} "
                                  "(from its split block)")  # fmt: skip
        for model in experiment["models"]:
            if model not in config["models"]:
                raise ConfigError(f"{where}.models': unknown model {model!r}; defined: {sorted(config['models'])}")
        if experiment_jobs(config, experiment) == 0:
            raise ConfigError(f"{where}': plans no training job (its tasks {experiment.get('tasks')} or folds "
                              f"{experiment.get('folds')} select nothing of {sorted(datasets)}); name at least one task "
                              "and fold, or leave `tasks`/`folds` out for all")  # fmt: skip
    _check_model_specs(config)


def _any_atom_table() -> Path | None:
    """The registry's default element table if present: enough to build a model on the meta
    device when the configured one is not (yet) there."""
    from prdnet.models.registry import DEFAULT_ATOM_FEATURES

    return DEFAULT_ATOM_FEATURES if DEFAULT_ATOM_FEATURES.exists() else None


def _check_model_specs(config: dict[str, Any]) -> None:
    """Every model spec resolves and builds: known preset, only hyperparameters its model
    declares, a valid training recipe (a key one model does not take fails here, before any
    job). Backbones are built on PyTorch's meta device: no memory, no weights."""
    import torch

    from prdnet.guards import DUMMY_MODEL
    from prdnet.models.registry import build_model
    from prdnet.training import resolve_training

    if DUMMY_MODEL in config["models"]:
        raise ConfigError(f"config key 'models.{DUMMY_MODEL}': the name is reserved for the Dummy baseline every table gets")
    # the table's existence is the file check's business (a dry run may plan without it)
    atom_features = config.get("atom_features")
    atom_features = atom_features if atom_features and Path(atom_features).exists() else None
    for name, spec in config["models"].items():
        try:
            resolve_training(spec, training_for_seed(config["training"], training_seeds(config["training"])[0]))
            with torch.device("meta"):
                build_model({**spec, "diffraction": None, "ablation": None}, "regression",
                            atom_features=atom_features or _any_atom_table())  # fmt: skip
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"config key 'models.{name}': {error}") from error

def _check_tasks_offered(config: dict[str, Any]) -> None:
    """Every dataset task is one its source offers (known from the config alone)."""
    from prdnet.data.sources import offered_tasks

    for name, dataset in config["datasets"].items():
        if "targets" in dataset:
            undefined = [t for t in dataset["tasks"] if t not in dataset["targets"]]
            if undefined:
                raise ConfigError(f"config key 'datasets.{name}.tasks': {undefined} have no entry in datasets.{name}.targets "
                                  f"(defined: {sorted(dataset['targets'])}); add one with its column, kind and unit")  # fmt: skip
            continue
        if dataset["source"] == "matbench":
            from prdnet.data.sources.matbench import STRUCTURE_TASKS, not_a_matbench_task

            if dataset["matbench_task"] not in STRUCTURE_TASKS:
                raise ConfigError(not_a_matbench_task(dataset["matbench_task"]).replace("<name>", name))
        offered = offered_tasks(dataset["source"], dataset)
        unknown = [t for t in dataset["tasks"] if offered is not None and t not in offered]
        if unknown:
            raise ConfigError(f"config key 'datasets.{name}.tasks': source {dataset['source']} does not offer {unknown}; "
                              f"it offers {offered}")  # fmt: skip


def _check_presets(config: dict[str, Any]) -> None:
    """Every model's preset exists in config/models.yaml (models of plugins bring their own)."""
    presets = yaml.safe_load(PRESETS_PATH.read_text(encoding="utf-8"))["models"]
    for key, spec in config["models"].items():
        name, preset = spec["name"], spec.get("preset", "small")
        if name in presets and preset not in presets[name]:
            raise ConfigError(f"config key 'models.{key}.preset': model {name} has no preset {preset!r}; "
                              f"its presets in {PRESETS_PATH.name}: {sorted(presets[name])}")  # fmt: skip


def configured_files(config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every file or folder the configuration names that must exist before a run, as
    config key → (path, "file" | "folder"). Files that download rules write are not listed."""
    files = {}
    for name, dataset in config["datasets"].items():
        key = f"datasets.{name}"
        if "path" in dataset:
            files[f"{key}.path"] = (dataset["path"], "file")
        if "structures_dir" in dataset:
            files[f"{key}.structures_dir"] = (dataset["structures_dir"], "folder")
        if dataset["source"] == "matbench" and Path(dataset["matminer_data"]) != Path(MATMINER_DOWNLOADS):
            files[f"{key}.matminer_data"] = (dataset["matminer_data"], "folder")
        for index, path in enumerate(dataset["split"].get("test", []) if dataset["split"]["kind"] == "id_lists" else []):
            files[f"{key}.split.test.{index}"] = (path, "file")
    for key in ("published_scores", "atom_features"):
        if config.get(key):
            files[key] = (config[key], "file")
    return files


def check_files(config: dict[str, Any], base_dir: str | Path = ".", warn_only: bool = False) -> None:
    """Stop if a configured file or folder is missing (relative paths start at ``base_dir``, the
    workflow's working directory), naming every such key. ``warn_only`` (a dry run, which plans
    from the config alone and needs no data) prints the problems to stderr instead."""
    problems = []
    for key, (path, kind) in configured_files(config).items():
        full = Path(base_dir) / path
        exists = full.is_dir() if kind == "folder" else full.is_file()
        if not exists:
            found = " (it is a folder)" if full.is_dir() else " (it is a file)" if full.is_file() else ""
            problems.append(f"config key '{key}': {kind} {path} not found{found}; relative paths start at "
                            f"{Path(base_dir).resolve()}: fix the path or create the {kind}")  # fmt: skip
    if problems and warn_only:
        print("warning: missing input files (a real run stops here):\n  " + "\n  ".join(problems), file=sys.stderr)
    elif problems:
        raise ConfigError("missing input files:\n  " + "\n  ".join(problems))


def check_device(config: dict[str, Any], jobs_run_here: bool) -> None:
    """``training.device: cuda`` needs GPUs: ``resources.train.gpu`` ≥ 1 for the jobs, and CUDA on
    this machine when the jobs run here (local execution)."""
    if config["training"].get("device", "auto") != "cuda":
        return
    if config["resources"]["train"]["gpu"] < 1:
        raise ConfigError("config key 'training.device' is cuda but 'resources.train.gpu' is 0, so training jobs get no "
                          "GPU: set resources.train.gpu to 1 or more, or training.device to auto")  # fmt: skip
    if jobs_run_here:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("config key 'training.device' is cuda but this machine has no CUDA device "
                              "(torch.cuda.is_available() is false) and the jobs run here: set training.device to "
                              "auto (CPU here, CUDA where present) or run on GPU nodes with a cluster profile")  # fmt: skip


FOLD_SOURCES = ("matbench",)
"""Sources that give a dataset's official test folds (split kind ``matbench``)."""


def check_results_dir(config: dict[str, Any], base_dir: str | Path = ".") -> None:
    """``results_dir`` is a folder, or can become one (no file in its way)."""
    path = Path(base_dir) / config["results_dir"]
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                raise ConfigError(f"config key 'results_dir': {config['results_dir']} cannot be a folder: {part} is a file; "
                                  "move the file away or name another results_dir")  # fmt: skip
            break


def check_startup(config: dict[str, Any], base_dir: str | Path = ".", jobs_run_here: bool = True) -> None:
    """Everything checked before the first job, beyond the schema (:func:`validate_config`): the
    configured files, the results folder and the device. The workflow's ``onstart`` and
    ``prdnet check-config`` both call this."""
    check_files(config, base_dir)
    check_results_dir(config, base_dir)
    check_device(config, jobs_run_here)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` unchanged if it matches the schema; otherwise raise :class:`ConfigError`
    listing every problem with the path of its key."""
    validator = jsonschema.Draft202012Validator(load_schema(), registry=_schema_registry())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    for name, dataset in config["datasets"].items():
        split = dataset["split"]
        if split["kind"] == "random" and abs(sum(split["fractions"]) - 1.0) > 1e-9:
            raise ConfigError(f"config key 'datasets.{name}.split.fractions': must sum to 1, got {split['fractions']}")
        if split["kind"] == "matbench" and dataset["source"] not in FOLD_SOURCES:
            raise ConfigError(f"config key 'datasets.{name}.split.kind': matbench takes MatBench's official test folds from "
                              f"the source, and source {dataset['source']!r} gives none: use a source among "
                              f"{list(FOLD_SOURCES)}, or split kind random, fold_column or id_lists")  # fmt: skip
        _check_out_of_distribution(name, dataset, config["datasets"])
    for task, (low, high) in config["validation"].get("target_bounds", {}).items():
        if low is not None and high is not None and low > high:
            raise ConfigError(f"config key 'validation.target_bounds.{task}': low {low} is above high {high}")
    _check_tasks_offered(config)
    _check_presets(config)
    _check_references(config)
    return config


def _check_out_of_distribution(name: str, dataset: dict[str, Any], datasets: dict[str, Any]) -> None:
    """Cluster names a ``leave_cluster_out`` split can hold out, ``leakage: group`` only where the
    workflow makes the split, and ``compare_with`` naming a dataset with a random split."""
    from prdnet.data.crystal_groups import CRYSTAL_SYSTEMS
    from prdnet.data.splits import GROUPABLE_KINDS

    split, where = dataset["split"], f"config key 'datasets.{name}"
    if split["kind"] == "leave_cluster_out":
        by, holdout = split["by"], split.get("holdout", [])
        if by == "element" and "holdout" not in split:
            raise ConfigError(f"{where}.split.holdout': leave_cluster_out by element needs the elements to hold out "
                              "(a crystal belongs to each of its elements, so they cannot be drawn as disjoint folds); "
                              "e.g. holdout: [O, F]")  # fmt: skip
        for index, label in enumerate(holdout):
            problem = None
            if by == "element" and not _is_element(str(label)):
                problem = f"{label!r} is not an element symbol"
            elif by == "crystal_system" and label not in CRYSTAL_SYSTEMS:
                problem = f"{label!r} is not a crystal system; the crystal systems: {list(CRYSTAL_SYSTEMS)}"
            elif by == "spacegroup" and not (isinstance(label, int) and 1 <= label <= 230):
                problem = f"{label!r} is not a space group number (1..230)"
            elif by == "chemical_system" and not all(_is_element(part) for part in str(label).split("-")):
                problem = f"{label!r} is not a chemical system (element symbols joined by '-', e.g. Fe-O)"
            if problem:
                raise ConfigError(f"{where}.split.holdout.{index}': {problem}")
    if dataset.get("leakage") == "group" and split["kind"] not in GROUPABLE_KINDS:
        raise ConfigError(f"{where}.leakage': group makes a split by duplicate clusters, which split kind "
                          f"{split['kind']!r} takes from elsewhere; use leakage: drop or report, or a split kind among "
                          f"{list(GROUPABLE_KINDS)}")  # fmt: skip
    reference = dataset.get("compare_with")
    if reference is not None:
        if reference not in datasets:
            raise ConfigError(f"{where}.compare_with': unknown dataset {reference!r}; defined: {sorted(datasets)}")
        if datasets[reference]["split"]["kind"] != "random":
            raise ConfigError(f"{where}.compare_with': {reference} has split kind {datasets[reference]['split']['kind']!r}; "
                              "the in-distribution reference needs a random split")  # fmt: skip


def _is_element(symbol: str) -> bool:
    from pymatgen.core.periodic_table import Element

    return Element.is_valid_symbol(symbol)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file and validate it."""
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping")
    return validate_config(config)


def training_seeds(training: dict[str, Any]) -> list[int]:
    """The seeds of the ``seed`` wildcard: ``training.seeds``, or the single ``training.seed``."""
    return [int(seed) for seed in training["seeds"]] if "seeds" in training else [int(training.get("seed", 0))]


def training_for_seed(training: dict[str, Any], seed: int) -> dict[str, Any]:
    """The training block one job runs with: ``seeds`` replaced by that job's ``seed``."""
    return {**{k: v for k, v in training.items() if k not in ("seed", "seeds")}, "seed": int(seed)}
