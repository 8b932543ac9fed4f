"""Backbones, ablations, the diffraction switch, the registry and presets, and learning."""

from __future__ import annotations

import math

import jsonschema
import pytest
import torch

from model_data import embedded_batch, torch_single_thread  # noqa: F401
from prdnet.models import build_model, count_parameters, load_presets
from prdnet.models.alignn import line_graph_pairs
from prdnet.models.base import encode
from prdnet.models.basis import angular_summary, bond_angle_cosines, edge_pairs, gaussian_basis
from prdnet.models.diffraction import InvariantDiffraction, PaperDiffraction
from prdnet.config import load_model_schema
from prdnet.models.registry import ABLATIONS, BACKBONES, DIFFRACTION_MODES, resolve_spec

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SCHEMA = load_model_schema()  # name lists filled from the registry

BASELINES = ["cgcnn", "schnet", "megnet", "alignn", "matformer", "icomformer"]
"""Every backbone but PRDNet, each with and without the diffraction plug-in."""

PUBLISHED_PARAMETERS = {"prdnet": 20.9e6, "alignn": 4.0e6, "matformer": 2.9e6, "icomformer": 4.1e6}
"""Published parameter counts (PRDNet paper; ComFormer paper's cost table), see config/models.yaml."""

VARIANTS = [
    *({"name": name, "diffraction": mode} for name in BASELINES for mode in (None, "paper", "invariant")),
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


def test_every_registered_backbone_is_tested_and_in_the_schema():
    assert set(BACKBONES) == set(BASELINES) | {"prdnet"}
    assert set(SCHEMA["properties"]["name"]["enum"]) == set(BACKBONES)  # and those of installed plugins
    assert SCHEMA["$defs"]["diffraction_mode"]["enum"] == list(DIFFRACTION_MODES)
    assert SCHEMA["$defs"]["ablation"]["enum"] == list(ABLATIONS)
    assert set(load_presets()["models"]) == set(BACKBONES)
    assert all({"small", "paper"} <= set(presets) for presets in load_presets()["models"].values())


def test_presets_are_read_once_per_file_version_and_each_caller_gets_its_own_copy(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models: {cgcnn: {small: {backbone: {channels: 8}}}}\n")
    first = load_presets(path)
    first["models"]["cgcnn"]["small"]["backbone"]["channels"] = 999  # the caller's copy only
    assert load_presets(path)["models"]["cgcnn"]["small"]["backbone"]["channels"] == 8
    path.write_text("models: {cgcnn: {small: {backbone: {channels: 16}}}}\n")  # an edit is a new version
    assert load_presets(path)["models"]["cgcnn"]["small"]["backbone"]["channels"] == 16


def test_diffraction_switch_plugs_the_module_into_any_backbone():
    for name, backbone in BACKBONES.items():
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


@pytest.mark.parametrize("name", BASELINES)
def test_prdnet_only_ablations_are_refused_for_the_baselines(name):
    with pytest.raises(ValueError, match="prdnet only"):
        build_model({"name": name, "ablation": "NoEdge"}, "regression")


def test_megnet_readout_is_set2set_of_atoms_and_bonds_with_the_state_and_feeds_fusion():
    batch = embedded_batch(6)
    for mode in (None, "paper"):
        model = build_model({"name": "megnet", "diffraction": mode}, "regression")
        h, g = encode(model.backbone, batch)
        width, pooled = model.backbone.out_channels, model.backbone.pooled_channels
        channels = model.backbone.node_set2set.channels
        assert h.shape == (batch.num_nodes, width)
        assert model.backbone.readout[0].in_features == 4 * channels + width  # Set2Set(v) ⊕ Set2Set(e) ⊕ u
        assert g.shape == (6, pooled) and model.head[0].in_features == pooled
        if mode is not None:
            assert model.fusion[0].in_features == pooled + model.diffraction.out_channels
            assert model.diffraction.form[0].in_features == width  # the plug-in reads the atoms' h


def test_mean_pooling_is_the_readout_of_backbones_without_their_own():
    batch = embedded_batch(6)
    model = build_model({"name": "schnet"}, "regression")
    h, g = encode(model.backbone, batch)
    means = torch.stack([h[batch.batch == b].mean(0) for b in range(6)])
    torch.testing.assert_close(g, means)


def test_alignn_line_graph_pairs_each_bond_with_every_bond_into_its_source_atom():
    batch = embedded_batch(3)
    sending, receiving = line_graph_pairs(batch.edge_index, batch.num_nodes)
    into = torch.bincount(batch.edge_index[1], minlength=batch.num_nodes)
    out_of = torch.bincount(batch.edge_index[0], minlength=batch.num_nodes)
    assert len(sending) == int((into * out_of).sum())
    assert (batch.edge_index[1][sending] == batch.edge_index[0][receiving]).all()


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


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_paper_preset_is_the_size_of_the_published_model(name):
    diffraction = "paper" if name == "prdnet" else None  # PRDNet's 20.9M includes its diffraction module
    count = count_parameters(build_model({"name": name, "preset": "paper", "diffraction": diffraction}, "regression"))
    slack = 2.0 if name == "prdnet" else 1.25  # PRDNet's paper gives no breakdown of its 20.9M
    assert PUBLISHED_PARAMETERS[name] / slack < count < slack * PUBLISHED_PARAMETERS[name]


# --- Learning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "cgcnn", "diffraction": None},
        {"name": "cgcnn", "diffraction": "invariant"},
        {"name": "prdnet", "diffraction": None},
        {"name": "prdnet", "diffraction": "paper"},
        {"name": "prdnet", "diffraction": "invariant"},
        *({"name": name, "diffraction": mode} for name in BASELINES[1:] for mode in (None, "paper")),
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
