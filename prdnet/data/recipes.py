"""Which graph recipe a model reads: the ``graphs:`` block of config/models.yaml and each
model preset's ``graph:`` key.

A preset without a ``graph:`` key uses the recipe named :data:`DEFAULT_RECIPE`; a presets file
without that recipe gets :class:`~prdnet.data.graphs.GraphParams`' defaults under that name.
The workflow (featurize once per distinct recipe, each training job reads its model's shards),
the training job and the audit all resolve recipes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prdnet.data.graphs import GraphParams, GraphRecipeError

DEFAULT_RECIPE = "default"


def graph_recipes(presets: Mapping[str, Any]) -> dict[str, GraphParams]:
    """Every recipe of the presets' ``graphs:`` block, validated (errors name the recipe and field)."""
    block = presets.get("graphs") or {}
    if not isinstance(block, Mapping):
        raise GraphRecipeError(f"the 'graphs' block of the model presets must map names to recipes, not {block!r}")
    recipes = {str(name): GraphParams.from_config(recipe or {}, str(name)) for name, recipe in block.items()}
    recipes.setdefault(DEFAULT_RECIPE, GraphParams())
    return recipes


def recipe_name_for(model_spec: Mapping[str, Any], presets: Mapping[str, Any]) -> str:
    """Name of the recipe of a model spec ``{name, preset, hyperparameters?}``: the spec's
    ``hyperparameters.graph`` if set, else its preset's ``graph:`` key, else ``default``."""
    name, preset = model_spec["name"], model_spec.get("preset", "small")
    models = presets.get("models") or {}
    if name not in models or preset not in (models[name] or {}):
        raise GraphRecipeError(f"model {name!r} has no preset {preset!r} in the model presets")
    override = (model_spec.get("hyperparameters") or {}).get("graph")
    return str(override or models[name][preset].get("graph") or DEFAULT_RECIPE)


def graph_recipe_for(model_spec: Mapping[str, Any], presets: Mapping[str, Any] | None = None) -> GraphParams:
    """The graph recipe of a model spec (``presets`` defaults to config/models.yaml)."""
    if presets is None:
        from prdnet.models.registry import load_presets

        presets = load_presets()
    recipe = recipe_name_for(model_spec, presets)
    recipes = graph_recipes(presets)
    if recipe not in recipes:
        raise GraphRecipeError(
            f"model {model_spec['name']!r} preset {model_spec.get('preset', 'small')!r} names graph recipe "
            f"{recipe!r}, which is not in the 'graphs' block; known: {sorted(recipes)}"
        )
    return recipes[recipe]
