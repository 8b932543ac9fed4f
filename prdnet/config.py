"""Load and validate the workflow configuration against ``workflow/schemas/config.schema.yaml``.

Errors name the offending key by its path (``datasets.mp.split.seed``) so a typo is found at
start-up, not hours into a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "workflow" / "schemas"
SCHEMA_PATH = SCHEMA_DIR / "config.schema.yaml"
MODEL_SCHEMA_PATH = SCHEMA_DIR / "model.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and error.context:
        # report the alternative whose discriminating constant ("kind") matched
        by_alternative: dict[int, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            by_alternative.setdefault(sub.relative_schema_path[0], []).append(sub)
        matching = [errs for errs in by_alternative.values() if not any(e.validator == "const" for e in errs)]
        if matching:
            return "; ".join(_describe(e) for e in matching[0])
    return f"config key '{_key_path(error)}': {error.message}"


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
    schema["properties"]["name"]["enum"] = list(BACKBONES)
    schema["$defs"]["diffraction_mode"]["enum"] = list(DIFFRACTION_MODES)
    schema["$defs"]["ablation"]["enum"] = list(ABLATIONS)
    schema["$defs"]["presets_file"]["properties"]["models"]["propertyNames"]["enum"] = list(BACKBONES)
    return schema


def load_schema() -> dict[str, Any]:
    """The configuration schema, its name lists filled from the model registry."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    experiment = schema["properties"]["experiments"]["items"]["properties"]
    names = workflow_names()
    experiment["diffraction"]["items"]["enum"] = names["diffraction"]
    experiment["ablations"]["items"]["enum"] = names["ablation"]
    return schema


def _schema_registry() -> Registry:
    """Resolves ``$ref: model.schema.yaml`` to the model spec schema."""
    return Registry().with_resource("model.schema.yaml", Resource.from_contents(load_model_schema(), DRAFT202012))


def _check_references(config: dict[str, Any]) -> None:
    """Names used by experiments must exist: datasets, their tasks, models."""
    for index, experiment in enumerate(config["experiments"]):
        where = f"config key 'experiments.{index}"
        for dataset in experiment["datasets"]:
            if dataset not in config["datasets"]:
                raise ConfigError(f"{where}.datasets': unknown dataset {dataset!r}; defined: {sorted(config['datasets'])}")
            unknown_tasks = set(experiment.get("tasks", [])) - set(config["datasets"][dataset]["tasks"])
            if unknown_tasks and len(experiment["datasets"]) == 1:
                raise ConfigError(f"{where}.tasks': {sorted(unknown_tasks)} not tasks of {dataset}")
        for model in experiment["models"]:
            if model not in config["models"]:
                raise ConfigError(f"{where}.models': unknown model {model!r}; defined: {sorted(config['models'])}")
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
    from prdnet.train import resolve_training

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
    _check_references(config)
    return config


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
