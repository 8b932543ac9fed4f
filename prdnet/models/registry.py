"""Model registry: a model spec (a dict from config) → an ``nn.Module``.

A spec (schema: ``workflow/schemas/model.schema.yaml``)::

    name: prdnet | cgcnn | schnet | megnet | alignn | matformer | icomformer
    preset: small | paper | ...           # from config/models.yaml (default: small)
    hyperparameters: {backbone: {...}, head: {...}}   # overrides of the preset (optional)
    training: {...}                       # overrides of the preset's training recipe (optional)
    diffraction: null | paper | invariant | {mode: invariant, q_max: 5.0, ...}
    ablation: null | NoDiff | SingleHead | NoRes | NoEdge | [list of those]

This module is the one list of names: :data:`BACKBONES` (models), :data:`DIFFRACTION_MODES`,
:data:`ABLATIONS`. The schemas, ``workflow/rules/common.smk``, the audit and the tests read them
from here. Each backbone declares the hyperparameters it accepts by its constructor's keyword
arguments (:func:`accepted_hyperparameters`), so a key one model does not take fails when the
configuration is checked, before any job. Adding a model is one file plus its presets.

Every backbone takes the diffraction plug-in the same way (:mod:`prdnet.models.base`), so
``cgcnn`` + ``diffraction: invariant`` is as valid as ``prdnet`` + ``diffraction: paper``.
The paper's PRDNet is ``{name: prdnet, preset: paper, diffraction: paper}``.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from prdnet.models.alignn import ALIGNN
from prdnet.models.atom_features import ATOM_INPUTS, atom_table_digest, load_atom_feature_table
from prdnet.models.base import CrystalPropertyModel, TaskKind
from prdnet.models.cgcnn import CGCNN
from prdnet.models.diffraction import DIFFRACTION_MODULES, build_diffraction
from prdnet.models.icomformer import IComFormer
from prdnet.models.matformer import Matformer
from prdnet.models.megnet import MEGNet
from prdnet.models.prdnet import PRDNet
from prdnet.models.schnet import SchNet
from prdnet.plugins import MODEL_GROUP, entry_point_names, load_entry_point

BACKBONES: dict[str, type[nn.Module]] = {
    "prdnet": PRDNet,
    "cgcnn": CGCNN,
    "schnet": SchNet,
    "megnet": MEGNet,
    "alignn": ALIGNN,
    "matformer": Matformer,
    "icomformer": IComFormer,
}

DIFFRACTION_MODES: tuple[str, ...] = tuple(DIFFRACTION_MODULES)
"""The diffraction plug-in's modes (:func:`prdnet.models.diffraction.build_diffraction`); the
workflow's ``diffraction`` wildcard adds ``none`` (the backbone alone)."""

ABLATIONS: dict[str, dict[str, Any]] = {
    "NoDiff": {},  # handled as diffraction = None
    "SingleHead": {"heads": 1},
    "NoRes": {"residual": False},
    "NoEdge": {"use_edge_features": False},
}
"""Each ablation as overrides of backbone hyperparameters (PRDNet's paper Table 3)."""

def available_models() -> list[str]:
    """Built-in backbones and those of installed packages (entry point group ``prdnet.models``, a
    class with a ``presets`` dict shaped as a ``models.<name>`` block of config/models.yaml)."""
    return sorted(set(BACKBONES) | set(entry_point_names(MODEL_GROUP)))


def backbone_class(name: str) -> type[nn.Module]:
    """The backbone class called ``name`` (built in first, then entry points)."""
    return BACKBONES[name] if name in BACKBONES else load_entry_point(MODEL_GROUP, name)


REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PRESETS = REPO_ROOT / "config" / "models.yaml"
DEFAULT_ATOM_FEATURES = Path(os.environ.get("PRDNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "cgcnn" / "atom_init.json"
"""CGCNN's 92-d element table, used when no path is given (the workflow passes the config's
``atom_features`` path)."""

CONSTRUCTOR_ONLY = ("atom_table",)
"""Backbone constructor arguments the registry fills in; not hyperparameters of a preset."""


def accepted_hyperparameters(name: str) -> set[str]:
    """Backbone hyperparameters model ``name`` accepts: its constructor's keyword arguments
    (less those the registry fills in), plus ``atom_input`` (``cgcnn`` | ``embedding``)
    for models whose constructor takes an atom table."""
    parameters = inspect.signature(backbone_class(name).__init__).parameters
    accepted = {p for p in parameters if p != "self" and p not in CONSTRUCTOR_ONLY}
    if "atom_table" in parameters:
        accepted.add("atom_input")
    return accepted


def check_backbone_hyperparameters(name: str, backbone: Mapping[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``backbone`` has a key model ``name`` does not take."""
    unknown = sorted(set(backbone) - accepted_hyperparameters(name))
    if unknown:
        raise ValueError(
            f"{where}: model {name!r} takes no hyperparameter(s) {unknown}; it takes {sorted(accepted_hyperparameters(name))}"
        )
    atom_input = backbone.get("atom_input")
    if atom_input is not None and atom_input not in ATOM_INPUTS:
        raise ValueError(f"{where}: atom_input must be one of {list(ATOM_INPUTS)}, not {atom_input!r}")


_PARSED_PRESETS: dict[tuple[str, int, int], dict[str, Any]] = {}


def load_presets(path: str | Path = DEFAULT_PRESETS) -> dict[str, Any]:
    """The presets file (``config/models.yaml`` by default) as a dict of the caller's own.

    The file is parsed once per version (path, size, modification time): a workflow resolves a
    spec per job, and parsing the YAML each time made planning 1,550 jobs take minutes."""
    status = os.stat(path)
    version = (os.path.abspath(path), status.st_size, status.st_mtime_ns)
    if version not in _PARSED_PRESETS:
        with open(path, encoding="utf-8") as handle:
            _PARSED_PRESETS[version] = yaml.safe_load(handle)
    return copy.deepcopy(_PARSED_PRESETS[version])


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        nested = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        merged[key] = _merge(merged[key], value) if nested else value
    return merged


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def resolve_spec(spec: Mapping[str, Any], presets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full hyperparameters of a spec: ``{name, preset, backbone, head, diffraction_mode,
    diffraction, graph, training}``.

    Applies preset → ``hyperparameters`` overrides → ablations, in that order. ``graph`` is the
    name of the preset's graph recipe (``default`` when the preset names none) and
    ``training`` the preset's training recipe with the spec's ``training`` overrides (the
    workflow's ``training`` block is applied on top by :func:`prdnet.training.resolve_training`).
    """
    presets = load_presets() if presets is None else presets
    name = spec["name"]
    if name not in available_models():
        raise ValueError(f"unknown model {name!r}; known: {', '.join(available_models())}")
    preset_name = spec.get("preset", "small")
    model_presets = presets["models"][name] if name in presets["models"] else backbone_class(name).presets
    if preset_name not in model_presets:
        raise ValueError(f"model {name!r} has no preset {preset_name!r}; known: {', '.join(model_presets)}")
    params = _merge(model_presets[preset_name], spec.get("hyperparameters") or {})
    check_backbone_hyperparameters(name, params["backbone"], f"model {name!r} preset {preset_name!r}")

    diffraction = spec.get("diffraction")
    diffraction_overrides: dict[str, Any] = {}
    if isinstance(diffraction, Mapping):
        diffraction_overrides = {k: v for k, v in diffraction.items() if k != "mode"}
        diffraction = diffraction["mode"]
    for ablation in _as_list(spec.get("ablation")):
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")
        if ablation == "NoDiff":
            diffraction = None
        elif name != "prdnet":
            raise ValueError(f"ablation {ablation} applies to prdnet only, not {name!r}")
        params["backbone"].update(ABLATIONS[ablation])

    diffraction_params = None
    if diffraction is not None:
        modes = presets["diffraction"][params["diffraction_preset"]]
        if diffraction not in modes:
            raise ValueError(f"unknown diffraction mode {diffraction!r}; known: {', '.join(modes)}")
        diffraction_params = _merge(modes[diffraction], diffraction_overrides)
    return {
        "name": name,
        "preset": preset_name,
        "backbone": params["backbone"],
        "head": params["head"],
        "diffraction_mode": diffraction,
        "diffraction": diffraction_params,
        "graph": params.get("graph", "default"),
        "training": _merge(params.get("training") or {}, spec.get("training") or {}),
    }


def backbone_arguments(backbone: Mapping[str, Any], atom_features: str | Path | None = None) -> dict[str, Any]:
    """Constructor arguments of a resolved backbone block: ``atom_input: cgcnn`` becomes
    ``atom_table`` = CGCNN's element table read from ``atom_features`` (default
    :data:`DEFAULT_ATOM_FEATURES`), ``atom_input: embedding`` becomes ``atom_table=None``."""
    arguments = dict(backbone)
    atom_input = arguments.pop("atom_input", None)
    if atom_input == "cgcnn":
        arguments["atom_table"] = load_atom_feature_table(atom_features or DEFAULT_ATOM_FEATURES)
    elif atom_input == "embedding":
        arguments["atom_table"] = None
    return arguments


def atom_features_identity(spec: Mapping[str, Any], atom_features: str | Path | None = None) -> str | None:
    """Digest of the element table a spec's model reads (None for a learned embedding): what a
    run records, so a changed table is visible in its parameters."""
    if resolve_spec(spec)["backbone"].get("atom_input") != "cgcnn":
        return None
    return atom_table_digest(load_atom_feature_table(atom_features or DEFAULT_ATOM_FEATURES))


def build_model(
    spec: Mapping[str, Any],
    task_kind: TaskKind,
    num_classes: int = 2,
    presets: Mapping[str, Any] | None = None,
    atom_features: str | Path | None = None,
) -> CrystalPropertyModel:
    """The model described by ``spec`` for a regression (output [B]) or classification task
    (logits [B, num_classes]). ``presets`` defaults to ``config/models.yaml``;
    ``atom_features`` is the path of CGCNN's element table for presets with
    ``atom_input: cgcnn`` (default :data:`DEFAULT_ATOM_FEATURES`)."""
    resolved = resolve_spec(spec, presets)
    backbone = backbone_class(resolved["name"])(**backbone_arguments(resolved["backbone"], atom_features))
    diffraction = (
        build_diffraction(resolved["diffraction_mode"], backbone.out_channels, resolved["diffraction"])
        if resolved["diffraction_mode"] is not None
        else None
    )
    head = resolved["head"]
    return CrystalPropertyModel(
        backbone,
        task_kind,
        num_classes,
        head_hidden=head["hidden"],
        head_layers=head["layers"],
        activation_name=head["activation"],
        diffraction=diffraction,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
