"""Model registry: a model spec (a dict from config) → an ``nn.Module``.

A spec (schema: ``workflow/schemas/model.schema.yaml``)::

    name: prdnet | cgcnn | schnet | megnet | alignn | matformer | icomformer
    preset: small | paper                 # from config/models.yaml (default: small)
    hyperparameters: {backbone: {...}, head: {...}}   # overrides of the preset (optional)
    diffraction: null | paper | invariant | {mode: invariant, q_max: 5.0, ...}
    ablation: null | NoDiff | SingleHead | NoRes | NoEdge | [list of those]

Every backbone takes the diffraction plug-in the same way (:mod:`prdnet.models.base`), so
``cgcnn`` + ``diffraction: invariant`` is as valid as ``prdnet`` + ``diffraction: paper``.
The paper's PRDNet is ``{name: prdnet, preset: paper, diffraction: paper}``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from prdnet.models.alignn import ALIGNN
from prdnet.models.base import CrystalPropertyModel, TaskKind
from prdnet.models.cgcnn import CGCNN
from prdnet.models.diffraction import build_diffraction
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


DEFAULT_PRESETS = Path(__file__).resolve().parents[2] / "config" / "models.yaml"


def load_presets(path: str | Path = DEFAULT_PRESETS) -> dict[str, Any]:
    """The presets file (``config/models.yaml`` by default) as a dict."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


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
    """The full hyperparameters of a spec: ``{name, backbone, head, diffraction_mode, diffraction}``.

    Applies preset → ``hyperparameters`` overrides → ablations, in that order.
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
        "backbone": params["backbone"],
        "head": params["head"],
        "diffraction_mode": diffraction,
        "diffraction": diffraction_params,
    }


def build_model(
    spec: Mapping[str, Any],
    task_kind: TaskKind,
    num_classes: int = 2,
    presets: Mapping[str, Any] | None = None,
) -> CrystalPropertyModel:
    """The model described by ``spec`` for a regression (output [B]) or classification task
    (logits [B, num_classes]). ``presets`` defaults to ``config/models.yaml``."""
    resolved = resolve_spec(spec, presets)
    backbone = backbone_class(resolved["name"])(**resolved["backbone"])
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
