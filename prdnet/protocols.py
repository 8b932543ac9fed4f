"""Protocols: how a published number was made, as data (config/protocols.yaml).

A protocol names the model and preset it applies to, the source it is read from (file and line),
and the training-recipe keys it fixes over that preset's own recipe (config/models.yaml, which is
the model's official code's): loss, optimizer, learning rate, batch, epochs, schedule, clipping,
early stopping, what of the fold validates (``validation``: the split's part, none, or a fraction
carved anew), which weights are tested (``select``) and whether targets are standardized
(``standardize_targets``). A model spec runs under a protocol by naming it (``protocol: <name>``);
each published score that names one of our models names its protocol too, and the report compares
a run with a published score only when both name the same protocol and the run changed none of its
keys (:func:`prdnet.training.recipe.protocol_deviations`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prdnet.guards import DUMMY_MODEL

DEFAULT_PROTOCOLS = Path(__file__).resolve().parents[1] / "config" / "protocols.yaml"
NO_PROTOCOL = "preset"
"""The protocol name of a spec that names none: its preset's own recipe, compared with no published score."""
UNSTATED_PROTOCOL = "unstated"
"""The protocol of a published score whose source does not let it be reconstructed: matched by no run."""
DUMMY_PROTOCOL = "dummy"
"""The Dummy's protocol: the training fold's mean (or majority class) predicts every test crystal."""


class ProtocolError(ValueError):
    """An unknown protocol, or one named by a model or preset it was not made for."""


@dataclass(frozen=True)
class Protocol:
    """One published protocol: for which model and preset, from which source, fixing which keys."""

    name: str
    model: str
    preset: str
    source: str
    training: dict[str, Any] = field(default_factory=dict)
    """Training-recipe keys fixed by the source, over the preset's recipe."""
    notes: str = ""
    """What the source fixes that the recipe cannot express, or what we could not match."""


_PARSED: dict[tuple, dict[str, Protocol]] = {}


def load_protocols(path: str | Path = DEFAULT_PROTOCOLS) -> dict[str, Protocol]:
    """The protocols file as {name: :class:`Protocol`} (parsed once per file version)."""
    status = os.stat(path)
    version = (os.path.abspath(path), status.st_size, status.st_mtime_ns)
    if version not in _PARSED:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        block = data.get("protocols")
        if not isinstance(block, Mapping):
            raise ProtocolError(f"{path}: needs a 'protocols' block mapping names to protocols")
        protocols = {}
        for name, entry in block.items():
            missing = [key for key in ("model", "preset", "source") if not (entry or {}).get(key)]
            if missing:
                raise ProtocolError(f"{path}: protocol {name!r} lacks {missing}")
            unknown = sorted(set(entry) - {"model", "preset", "source", "training", "notes"})
            if unknown:
                raise ProtocolError(f"{path}: protocol {name!r} has unknown key(s) {unknown}")
            protocols[str(name)] = Protocol(name=str(name), model=str(entry["model"]), preset=str(entry["preset"]),
                                            source=" ".join(str(entry["source"]).split()),
                                            training=dict(entry.get("training") or {}),
                                            notes=" ".join(str(entry.get("notes") or "").split()))  # fmt: skip
        _PARSED[version] = protocols
    return copy.deepcopy(_PARSED[version])


def protocol_for(model_spec: Mapping[str, Any], protocols: Mapping[str, Protocol] | None = None) -> Protocol | None:
    """The protocol a model spec names (None when it names none).

    Raises :class:`ProtocolError` for an unknown name, or a protocol made for another model or
    preset (its recipe would be another model's)."""
    name = model_spec.get("protocol")
    if not name:
        return None
    protocols = load_protocols() if protocols is None else protocols
    if name not in protocols:
        raise ProtocolError(f"unknown protocol {name!r} (model spec {dict(model_spec)}); known: {sorted(protocols)} "
                            f"(config/protocols.yaml)")
    protocol = protocols[name]
    preset = model_spec.get("preset", "small")
    if (protocol.model, protocol.preset) != (model_spec["name"], preset):
        raise ProtocolError(f"protocol {name!r} is for model {protocol.model!r} preset {protocol.preset!r}, not "
                            f"{model_spec['name']!r} preset {preset!r}: name a protocol of this model and preset")
    return protocol


def protocol_name(model_spec: Mapping[str, Any]) -> str:
    """The protocol a job runs under: the spec's, the Dummy's, or :data:`NO_PROTOCOL`."""
    if model_spec["name"] == DUMMY_MODEL:
        return DUMMY_PROTOCOL
    return str(model_spec.get("protocol") or NO_PROTOCOL)


def check_score_protocols(scores: list[Mapping[str, Any]], where: str,
                          protocols: Mapping[str, Protocol] | None = None) -> None:
    """Every published score that names our model (``ours``) names its protocol: one of
    ``protocols`` made for that model, or :data:`UNSTATED_PROTOCOL`. Raises
    :class:`ProtocolError` naming the score and the fix."""
    protocols = load_protocols() if protocols is None else protocols
    for score in scores:
        if "ours" not in score:
            continue
        name, label = score.get("protocol"), f"{where}: score {score.get('dataset')} {score.get('task')} {score.get('model')}"
        if not name:
            raise ProtocolError(f"{label} names our model {score['ours']!r} but no protocol: add `protocol:` (a name of "
                                f"config/protocols.yaml, or {UNSTATED_PROTOCOL!r} if its source does not fix one)")
        if name != UNSTATED_PROTOCOL and (name not in protocols or protocols[name].model != score["ours"]):
            raise ProtocolError(f"{label}: protocol {name!r} is not a protocol of model {score['ours']!r} in "
                                f"config/protocols.yaml; known: {sorted(protocols)}")
