"""Backbones, ablations, the diffraction switch, the registry and presets, and learning."""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml

from model_data import embedded_batch, torch_single_thread  # noqa: F401
from prdnet.models import build_model, count_parameters, load_presets
from prdnet.models.basis import angular_summary, bond_angle_cosines, edge_pairs, gaussian_basis
from prdnet.models.cgcnn import CGCNN
from prdnet.models.diffraction import InvariantDiffraction, PaperDiffraction
from prdnet.models.prdnet import PRDNet
from prdnet.models.registry import resolve_spec

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "model.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())

VARIANTS = [
    {"name": "cgcnn", "diffraction": None},
    {"name": "cgcnn", "diffraction": "paper"},
    {"name": "cgcnn", "diffraction": "invariant"},
    {"name": "prdnet", "diffraction": None},
    {"name": "prdnet", "diffraction": "paper"},
    {"name": "prdnet", "diffraction": "invariant"},
    {"name": "prdnet", "diffraction": "paper", "ablation": "NoDiff"},
    {"name": "prdnet", "diffraction": "paper", "ablation": "SingleHead"},
    {"name": "prdnet", "diffraction": "paper", "ablation": "NoRes"},
    {"name": "prdnet", "diffraction": "paper", "ablation": "NoEdge"},
    {"name": "prdnet", "diffraction": "invariant", "ablation": ["SingleHead", "NoRes", "NoEdge"]},
]


def variant_id(spec: dict) -> str:
    ablation = spec.get("ablation")
    ablation = "+".join(ablation) if isinstance(ablation, list) else ablation
    return "-".join(str(part) for part in (spec["name"], spec["diffraction"] or "nodiff", ablation) if part)


# --- Edge geometry ---------------------------------------------------------------------


def test_edge_pairs_are_all_ordered_pairs_of_distinct_edges_at_the_same_centre():
    centre = torch.tensor([2, 0, 2, 1, 0, 2, 0])
    first, second = edge_pairs(centre, 3)
    expected = {(a, b) for a in range(7) for b in range(7) if a != b and centre[a] == centre[b]}
    assert set(zip(first.tolist(), second.tolist())) == expected
    assert len(first) == len(expected)


def test_bond_angle_cosines_of_perpendicular_and_opposite_bonds():
    vectors = torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [-1.0, 0, 0]], dtype=torch.float64)
    cosines = bond_angle_cosines(vectors, torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]))
    torch.testing.assert_close(cosines, torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))


def test_angular_summary_is_the_mean_basis_of_the_other_bond_angles_at_the_centre():
    vectors = torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [-1.0, 0, 0]], dtype=torch.float64)
    centers = torch.linspace(-1, 1, 5, dtype=torch.float64)
    summary = angular_summary(vectors, torch.zeros(3, dtype=torch.long), 1, centers, 0.3)
    phi = lambda cos: gaussian_basis(torch.tensor(cos, dtype=torch.float64), centers, 0.3)  # noqa: E731
    torch.testing.assert_close(summary[0], (phi(0.0) + phi(-1.0)) / 2)
    torch.testing.assert_close(summary[1], (phi(0.0) + phi(0.0)) / 2)


# --- Every model and switch: shapes and gradients ------------------------------------------


@pytest.mark.parametrize("task_kind", ["regression", "classification"])
@pytest.mark.parametrize("spec", VARIANTS, ids=variant_id)
def test_every_model_and_switch_gives_the_right_shape_and_gradients_for_all_parameters(spec, task_kind):
    torch.manual_seed(0)
    classification = task_kind == "classification"
    batch = embedded_batch(6, task="is_metal" if classification else "formation_energy", classification=classification)
    model = build_model(spec, task_kind, num_classes=3)
    out = model(batch)
    if classification:
        assert out.shape == (6, 3)
        loss = torch.nn.functional.cross_entropy(out, batch.y)
    else:
        assert out.shape == (6,)
        loss = (out - batch.y).abs().mean()
    loss.backward()
    assert torch.isfinite(out).all()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} receives no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"


def test_a_float32_model_accepts_float64_geometry():
    model = build_model({"name": "prdnet", "diffraction": "invariant"}, "regression")
    assert model(embedded_batch(3, dtype=torch.float64)).dtype == torch.float32


# --- Switches ------------------------------------------------------------------------------


def test_diffraction_switch_plugs_the_module_into_any_backbone():
    for name, backbone in [("cgcnn", CGCNN), ("prdnet", PRDNet)]:
        assert build_model({"name": name, "diffraction": None}, "regression").diffraction is None
        paper = build_model({"name": name, "diffraction": "paper"}, "regression")
        invariant = build_model({"name": name, "diffraction": "invariant"}, "regression")
        assert isinstance(paper.backbone, backbone) and isinstance(invariant.backbone, backbone)
        assert isinstance(paper.diffraction, PaperDiffraction)
        assert isinstance(invariant.diffraction, InvariantDiffraction)


def test_ablations_remove_what_they_name():
    base = build_model({"name": "prdnet", "diffraction": "paper"}, "regression")
    assert base.diffraction is not None and base.backbone.layers[0].heads == 4
    no_diff = build_model({"name": "prdnet", "diffraction": "paper", "ablation": "NoDiff"}, "regression")
    assert no_diff.diffraction is None
    single = build_model({"name": "prdnet", "diffraction": "paper", "ablation": "SingleHead"}, "regression")
    assert all(layer.heads == 1 for layer in single.backbone.layers)
    no_res = build_model({"name": "prdnet", "diffraction": "paper", "ablation": "NoRes"}, "regression")
    assert all(layer.gate is None for layer in no_res.backbone.layers)
    no_edge = build_model({"name": "prdnet", "diffraction": "paper", "ablation": "NoEdge"}, "regression")
    assert all(layer.edge is None and layer.slots == 2 for layer in no_edge.backbone.layers)


def test_prdnet_only_ablations_are_refused_for_cgcnn():
    with pytest.raises(ValueError, match="prdnet only"):
        build_model({"name": "cgcnn", "ablation": "NoEdge"}, "regression")


def test_spec_hyperparameters_and_diffraction_overrides_take_precedence_over_the_preset():
    resolved = resolve_spec(
        {
            "name": "prdnet",
            "hyperparameters": {"backbone": {"layers": 1}, "head": {"hidden": 8}},
            "diffraction": {"mode": "invariant", "q_max": 3.0},
        }
    )
    assert resolved["backbone"]["layers"] == 1 and resolved["backbone"]["channels"] == 64
    assert resolved["head"]["hidden"] == 8
    assert resolved["diffraction"]["q_max"] == 3.0 and resolved["diffraction"]["shells"] == 16


# --- Presets and schema --------------------------------------------------------------------


def test_presets_file_and_example_specs_follow_the_model_schema():
    jsonschema.validate(load_presets(), {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/presets_file"})
    for spec in VARIANTS + [{"name": "prdnet", "preset": "paper", "diffraction": {"mode": "invariant", "q_max": 5}}]:
        jsonschema.validate(spec, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "prdnet", "ablation": "NoAttention"}, SCHEMA)


def test_paper_preset_is_the_size_of_the_published_model():
    count = count_parameters(build_model({"name": "prdnet", "preset": "paper", "diffraction": "paper"}, "regression"))
    assert 0.5 * 20.9e6 < count < 2 * 20.9e6


# --- Learning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "cgcnn", "diffraction": None},
        {"name": "cgcnn", "diffraction": "invariant"},
        {"name": "prdnet", "diffraction": None},
        {"name": "prdnet", "diffraction": "paper"},
        {"name": "prdnet", "diffraction": "invariant"},
    ],
    ids=variant_id,
)
def test_model_overfits_32_embedded_crystals_formation_energy(spec):
    torch.manual_seed(0)
    batch = embedded_batch(32, max_atoms=16)
    target_spread = float(batch.y.std())
    model = build_model(spec, "regression")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    mae = math.inf
    for step in range(1, 301):
        model.train()
        optimizer.zero_grad()
        (model(batch) - batch.y).abs().mean().backward()
        optimizer.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                mae = float((model(batch) - batch.y).abs().mean())
            if mae < 0.1 * target_spread:
                break
    assert mae < 0.1 * target_spread, f"training MAE {mae:.3f} after {step} steps, target std {target_spread:.3f}"
