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


def load_schema() -> dict[str, Any]:
    """The configuration schema, with the list of sources from the source registry
    (:func:`prdnet.data.sources.available_sources`: built-in and installed through entry points)."""
    from prdnet.data.sources import available_sources

    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    source = schema["$defs"]["dataset"]["properties"]["source"]
    source["enum"] = available_sources()
    return schema


def load_model_schema() -> dict[str, Any]:
    """The model spec schema, its model names extended by the models of installed packages
    (entry point group ``prdnet.models``; listed without importing them)."""
    from prdnet.plugins import MODEL_GROUP, entry_point_names

    schema = yaml.safe_load(MODEL_SCHEMA_PATH.read_text(encoding="utf-8"))
    names = schema["properties"]["name"]
    names["enum"] = sorted(set(names["enum"]) | set(entry_point_names(MODEL_GROUP)))
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
    for name, dataset in config["datasets"].items():
        if "targets" in dataset:
            undefined = [t for t in dataset["tasks"] if t not in dataset["targets"]]
            if undefined:
                raise ConfigError(f"config key 'datasets.{name}.tasks': {undefined} have no entry in datasets.{name}.targets "
                                  f"(defined: {sorted(dataset['targets'])}); add one with its column, kind and unit")  # fmt: skip
    for task, (low, high) in config["validation"].get("target_bounds", {}).items():
        if low is not None and high is not None and low > high:
            raise ConfigError(f"config key 'validation.target_bounds.{task}': low {low} is above high {high}")
    _check_references(config)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file and validate it."""
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping")
    return validate_config(config)
